"""Optimizers as optax GradientTransformations, and `build` to make one from a config.

    >>> from big_batch import optim
    >>> tx = optim.lamb(1e-3, weight_decay=0.01, weight_decay_mask=optim.masks.exclude_bias_and_norm)

`build(config.optimizer, total_steps, batch=config.batch)` makes the optimizer a config names:
`config.optimizer` holds `name`, the schedule fields (`learning_rate`, `schedule`,
`warmup_steps`, `end_value`, `power`), an optional `grad_clip_norm` (clip by global norm
before the optimizer), and every other field as a keyword argument of the optimizer. Fields
ending in `_mask` name a mask of `big_batch.optim.masks`. A task with several optimizers
(actor, critic, ...) builds each from its own section, e.g. `config.optimizers.actor`.
"""
import inspect
from typing import NamedTuple

import optax

from big_batch import checks
from big_batch.checks import ConfigError
from big_batch.optim import masks, schedules
from big_batch.optim.adagrad import adagrad_norm, filterwise_adagrad_norm
from big_batch.optim.baselines import adamw, sgd
from big_batch.optim.delayed import delayed_sgd
from big_batch.optim.layerwise import lamb, lars, novograd
from big_batch.scaling.learning_rate import RULES as LR_SCALING_RULES
from big_batch.scaling.learning_rate import scale_learning_rate

OPTIMIZERS = {
    "sgd": sgd,
    "adamw": adamw,
    "lamb": lamb,
    "lars": lars,
    "novograd": novograd,
    "adagrad": optax.adagrad,
    "adagrad_norm": adagrad_norm,
    "filterwise_adagrad_norm": filterwise_adagrad_norm,
    "delayed_sgd": delayed_sgd,
}

_SCHEDULE_FIELDS = ("learning_rate", "schedule", "warmup_steps", "end_value", "power")
_OWN_FIELDS = ("name", *_SCHEDULE_FIELDS, "grad_clip_norm")

__all__ = ["OPTIMIZERS", "Optimizer", "adagrad_norm", "adamw", "build", "check",
           "filterwise_adagrad_norm", "lamb", "lars", "masks", "novograd",
           "peak_learning_rate", "schedules", "sgd"]


class Optimizer(NamedTuple):
  """A built optimizer: the transformation and its learning rate as a function of the step."""
  tx: optax.GradientTransformation
  learning_rate: optax.Schedule


def peak_learning_rate(config, batch=None) -> float:
  """`config.learning_rate` scaled from `batch.base_size` to `batch.size` by `batch.lr_scaling`.

    linear: lr = learning_rate * B / B0        (Goyal et al. 2017)
    sqrt:   lr = learning_rate * sqrt(B / B0)  (Hoffer et al. 2017; You et al. 2020)
  with B0 the batch the learning rate was tuned at (scaling/learning_rate.py). No `batch`, or
  rule 'none': the learning rate as given.
  """
  if batch is None:
    return config.learning_rate
  return scale_learning_rate(config.learning_rate, batch.get("base_size", batch.size),
                             batch.size, batch.get("lr_scaling", "none"))


def build(config, total_steps: int, batch=None, name: str = "optimizer") -> Optimizer:
  """The optimizer named by `config.name`, its schedule over `total_steps` built once.

  `batch` (a config's `batch` section) scales the peak learning rate to the batch size
  (`peak_learning_rate`); the schedule the transformation follows is the one returned.
  `name` is the config section's path, for errors (e.g. 'optimizers.critic').
  """
  if config.name not in OPTIMIZERS:
    raise ValueError(f"config.{name}.name={config.name!r} is not one of {sorted(OPTIMIZERS)}")
  warmup = config.get("warmup_steps", 0)
  if warmup > total_steps:
    raise ConfigError(f"config.{name}.warmup_steps={warmup} is longer than the run's "
                      f"{total_steps} steps")
  schedule = schedules.warmup_then(
      decay=config.get("schedule", "constant"),
      peak_value=peak_learning_rate(config, batch),
      total_steps=total_steps,
      warmup_steps=warmup,
      end_value=config.get("end_value", 0.0),
      power=config.get("power", 2.0))
  kwargs = {k: v for k, v in config.items() if k not in _OWN_FIELDS}
  for key, value in kwargs.items():
    if key.endswith("_mask") and (value is None or isinstance(value, str)):
      kwargs[key] = masks.get(value)
  tx = OPTIMIZERS[config.name](learning_rate=schedule, **kwargs)
  if config.get("grad_clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return Optimizer(tx, schedule)


def check(section: "checks.Section") -> None:
  """Validates an optimizer section (`config.optimizer`, `config.optimizers.<name>`).

  Every field must be read by something: the schedule fields here, the others as keyword
  arguments of the named optimizer, whose signature says which exist.
  """
  name = section.one_of("name", OPTIMIZERS)
  section.positive("learning_rate")
  section.one_of("schedule", schedules.SCHEDULES, default="constant")
  section.non_negative("warmup_steps", default=0, integer=True)
  section.read("end_value", default=0.0)
  section.read("power", default=2.0)
  clip = section.read("grad_clip_norm", default=None)
  if clip is not None:
    section.positive("grad_clip_norm")
  accepted = set(inspect.signature(OPTIMIZERS[name]).parameters) - {"learning_rate"}
  for key in section.keys():
    if key in accepted:
      value = section.read(key)
      if key.endswith("_mask") and (value is None or isinstance(value, str)):
        section.one_of(key, (None, *masks.NAMES))
  section.reject_unread(f"optimizer {name!r} takes {sorted(accepted)}")


def check_batch_scaling(batch: "checks.Section") -> None:
  """Validates the learning-rate scaling fields of a `batch` section."""
  batch.one_of("lr_scaling", LR_SCALING_RULES, default="none")
  batch.positive("base_size", default=batch.read("size"), integer=True)
