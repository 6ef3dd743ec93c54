"""The shipped configs, importable wherever big_batch is installed: `big_batch.configs`.

    >>> from big_batch import configs
    >>> config = configs.get("mnist1d_cnn", "quick")   # what --config configs/mnist1d_cnn.py:quick loads

Each module here has `get_config(arg)`; its docstring holds the command line and the result
to expect. On the command line the same files are named by path (`--config configs/X.py`).
"""
import importlib
import pkgutil

import ml_collections


def names() -> list[str]:
  """The names of the shipped configs ('mnist1d_cnn', and 'offline_rl.sac_n' for
  configs/offline_rl/sac_n.py); modules whose name starts with '_' are not configs."""
  found = []
  for module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    name = module.name[len(__name__) + 1:]
    if not module.ispkg and not name.rsplit(".", 1)[-1].startswith("_"):
      found.append(name)
  return sorted(found)


def get(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """The config `name` (e.g. 'mnist1d_cnn'), with its argument (e.g. 'quick'), unlocked."""
  if name not in names():
    raise ValueError(f"config {name!r} is not one of {names()}")
  return importlib.import_module(f"{__name__}.{name}").get_config(arg)
