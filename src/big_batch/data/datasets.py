"""Data sets by name, read through tfds data sources (array_record), as arrays or records.

`load(config.data)` prepares the offline builders (mnist1d, digits, pydoc_text, and the
families' seqrec (recsys/), regression (selection/) and singlecell (singlecell/)) on first
use
in `config.data.data_dir` and opens standard tfds data sets (cifar10, mnist, ...) that are
already prepared there; nothing is downloaded. Every split the data set has is available
(`Dataset.split(name)`), read from disk only when first used; `config.train_subset` (a .npy
of indices) restricts training to those examples. Examples are stacked per
feature. In classification data (a `label_key` feature) every example becomes
{'input': float32 array, 'label': int32}, uint8 images scaled to [0, 1]; other data sets
(pydoc_text: {'inputs', 'targets'} int32 byte sequences) keep their features as stored.
RLDS episode data sets (`big_batch.rl.offline_builder`, tfds' prepared `d4rl_mujoco_*`) with
`config.transitions = True` become splits of transitions {observation, action, reward,
next_observation, terminal} (data/rlds.py).
"""
import contextlib
import dataclasses
import io
import os
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from big_batch.checks import ConfigError
from big_batch.data import rlds
from big_batch.data.builders import digits, mnist1d, pydoc_text
from big_batch.recsys import builder as seqrec
from big_batch.rl import offline_builder
from big_batch.rl import states_builder as rl_states
from big_batch.selection import regression_builder
from big_batch.singlecell import builder as singlecell

# Builders that generate their data offline: name -> (builder class, default variant).
OFFLINE_BUILDERS = {
    "mnist1d": (mnist1d.Mnist1d, "standard"),
    "digits": (digits.Digits, None),
    "pydoc_text": (pydoc_text.PydocText, "seq256"),
    "seqrec": (seqrec.SeqRec, "synthetic"),
    "regression": (regression_builder.Regression, "diabetes"),
    "singlecell": (singlecell.SingleCell, "sim_medium"),
    "offline_rl": (offline_builder.OfflineRL, "pendulum-medium"),
    "rl_states": (rl_states.RlStates, "four_rooms"),
}
# Fields only one offline builder reads.
_BUILDER_FIELDS = {"mnist1d": ("num_samples",), "pydoc_text": ("seq_len",)}


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: `read(indices)` returns the examples at `indices` as stacked arrays."""
  num_examples: int
  read: Callable[[np.ndarray], dict]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """The splits of one data set; `num_classes` and `input_shape` are None without labels."""
  splits: Mapping[str, Split]
  num_classes: int | None
  input_shape: tuple | None
  train_split: str = "train"

  def split(self, name: str) -> Split:
    if name not in self.splits:
      raise ValueError(f"split {name!r} is not one of this data set's splits "
                       f"{sorted(self.splits)}")
    return self.splits[name]

  @property
  def train(self) -> Split:
    return self.split(self.train_split)


def default_data_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def stack_examples(records: Sequence[dict], input_key: str, label_key: str) -> dict:
  """Records from a tfds data source -> {'input': float32 [n, ...], 'label': int32 [n]}."""
  inputs = np.stack([r[input_key] for r in records])
  if inputs.dtype == np.uint8:
    inputs = inputs.astype(np.float32) / 255.0
  labels = np.asarray([r[label_key] for r in records], dtype=np.int32)
  return {"input": inputs.astype(np.float32), "label": labels}


def stack_features(records: Sequence[dict]) -> dict:
  """Records from a tfds data source -> {feature: array [n, ...]}, dtypes as stored."""
  return {key: np.stack([r[key] for r in records]) for key in records[0]}


def _split(source, stack, in_memory) -> Split:
  """A split read on demand; in memory, all of it is read (once) at the first read."""
  n = len(source)
  if not in_memory:
    return Split(n, lambda idx: stack(source.__getitems__(np.asarray(idx).tolist())))
  arrays = {}

  def read(idx):
    if not arrays:
      arrays.update(stack(source.__getitems__(range(n))))
    return {k: v[idx] for k, v in arrays.items()}

  return Split(n, read)


def _builder(config, data_dir):
  cls, default_variant = OFFLINE_BUILDERS[config.name]
  variant = config.get("variant") or default_variant
  kwargs = dict(data_dir=data_dir, file_format="array_record")
  if config.name == "mnist1d" and config.get("num_samples"):
    variant = mnist1d.Mnist1dConfig(name=f"n{config.num_samples}",
                                    num_samples=config.num_samples)
  if config.name == "pydoc_text" and config.get("seq_len"):
    variant = pydoc_text.builder_config(config.seq_len)
  if variant is not None:
    kwargs["config"] = variant
  # tfds warns that a data set not yet generated "has no dataset_info.json", and prints
  # "Downloading and preparing dataset Unknown size ..." for data it generates.
  with _quiet_tfds():
    builder = cls(**kwargs)
    if not builder.is_prepared():
      shown = getattr(variant, "name", variant)
      print(f"Generating {config.name}{f' ({shown})' if shown else ''} offline into "
            f"{builder.data_dir} (once; later runs reuse it) ...", flush=True)
      with contextlib.redirect_stdout(io.StringIO()):
        builder.download_and_prepare()
  return builder


@contextlib.contextmanager
def _quiet_tfds():
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def load(config) -> Dataset:
  """The data set `config.name`; its training split is `config.train_split` ('train')."""
  data_dir = config.get("data_dir") or default_data_dir()
  if config.name in OFFLINE_BUILDERS:
    tfds.display_progress_bar(False)
    builder = _builder(config, data_dir)
  else:
    builder = _tfds_builder(config.name, data_dir)
    if not builder.is_prepared():
      raise FileNotFoundError(
          f"config.data.name={config.name!r} is not prepared in data_dir={data_dir!r}; "
          "prepare it there with tfds (file_format='array_record') on a machine with network")
  input_key = config.get("input_key", "input")
  label_key = config.get("label_key", "label")
  features = builder.info.features
  if label_key in features:  # Classification.
    stack = lambda records: stack_examples(records, input_key, label_key)
    num_classes, input_shape = features[label_key].num_classes, tuple(features[input_key].shape)
  else:
    stack, num_classes, input_shape = stack_features, None, None
  in_memory = config.get("in_memory", True)
  if config.get("transitions", False):  # RLDS episodes -> transitions (data/rlds.py).
    splits = {name: _transitions_split(source)
              for name, source in builder.as_data_source().items()}
    num_classes = input_shape = None
  else:
    splits = {name: _split(source, stack, in_memory)
              for name, source in builder.as_data_source().items()}
  train_split = config.get("train_split", "train")
  dataset = Dataset(splits=splits, num_classes=num_classes, input_shape=input_shape,
                    train_split=train_split)
  dataset.train  # noqa: B018 -- a missing training split is an error now, not at step 1.
  if config.get("train_subset"):
    indices = read_subset(config.train_subset, dataset.train.num_examples)
    splits[train_split] = subset(dataset.train, indices)
  return dataset


def _tfds_builder(name: str, data_dir: str):
  """The tfds builder of `name` ('dataset[/config][:version]') in `data_dir`. A data set whose
  builder code cannot run here (tfds' d4rl builders declare TensorFlow dtypes) is read from
  its prepared directory (`tfds.builder_from_directory`: features from its own metadata)."""
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f"config.data.name={name!r} is neither an offline data set "
                     f"{sorted(OFFLINE_BUILDERS)} nor a tfds data set") from e
  except ImportError as e:  # tfds re-raises the builder's failure with its own message.
    directory = prepared_directory(name, data_dir)
    if directory is None:
      raise FileNotFoundError(
          f"config.data.name={name!r} is not prepared in data_dir={data_dir!r} (and its "
          f"builder cannot run here: {e})") from e
    return tfds.builder_from_directory(directory)


def prepared_directory(name: str, data_dir: str) -> str | None:
  """data_dir/dataset/config/version of a prepared tfds data set (the newest version unless
  `name` ends in ':version'), or None."""
  name, _, version = name.partition(":")
  root = epath.Path(data_dir) / name
  if not root.is_dir():
    return None
  versions = [p for p in root.iterdir() if (p / "dataset_info.json").exists()]
  if version:
    versions = [p for p in versions if p.name == version]
  if not versions:
    return None
  newest = max(versions, key=lambda p: tuple(int(x) for x in p.name.split(".")))
  return str(newest)


def _transitions_split(source) -> Split:
  """The transitions of an RLDS split's episodes, read now and held in memory."""
  arrays = rlds.transitions(source)
  return Split(len(arrays["reward"]),
               lambda idx: {key: value[np.asarray(idx)] for key, value in arrays.items()})


def subset(split: Split, indices: np.ndarray) -> Split:
  """The examples `indices` of `split`, as a split of their own (in that order)."""
  indices = np.asarray(indices, np.int64)
  return Split(len(indices), lambda idx: split.read(indices[np.asarray(idx)]))


def read_subset(path: str, num_examples: int) -> np.ndarray:
  """The training-example indices in the .npy file `path` (config.data.train_subset): e.g. the
  labelled pool of an active-learning round, or a fixed coreset. Distinct, in range."""
  with epath.Path(path).open("rb") as f:
    indices = np.load(f)
  if (indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer) or not len(indices)
      or indices.min() < 0 or indices.max() >= num_examples
      or len(np.unique(indices)) != len(indices)):
    raise ConfigError(f"config.data.train_subset={path!r} must hold distinct integer indices "
                      f"in [0, {num_examples}) of the training split; it holds "
                      f"{indices.dtype} {indices.shape}")
  return indices


def check(section) -> None:
  """Validates `config.data` (a `checks.Section`) without reading any data."""
  name = section.read("name")
  if name not in OFFLINE_BUILDERS:
    try:
      tfds.builder_cls(str(name).split("/")[0].split(":")[0])
    except tfds.core.registered.DatasetNotFoundError:
      section.fail("name", f"is neither an offline data set {sorted(OFFLINE_BUILDERS)} nor "
                           "a tfds data set")
  section.read("data_dir", default=None)
  section.boolean("in_memory", default=True)
  section.non_negative("prefetch", default=4, integer=True)
  section.read("train_split", default="train")
  subset_path = section.read("train_subset", default=None)
  if subset_path is not None and not epath.Path(subset_path).exists():
    section.fail("train_subset", "is not a file (a .npy of training-example indices)")
  section.boolean("transitions", default=False)
  section.read("input_key", default="input")
  section.read("label_key", default="label")
  variant = section.read("variant", default=None)
  if variant is not None:
    names = [c.name for c in getattr(OFFLINE_BUILDERS.get(name, (None,))[0], "BUILDER_CONFIGS",
                                     [])]
    if variant not in names:
      section.fail("variant", f"is not a variant of {name!r}: {names}")
  for owner, fields in _BUILDER_FIELDS.items():
    for field in fields:
      if section.has(field) and section.read(field, default=None) is not None:
        if owner != name:
          section.fail(field, f"is a field of the {owner!r} data set, not of {name!r}")
        section.positive(field, integer=True)
  section.reject_unread("data set fields: name, variant, data_dir, in_memory, prefetch, "
                        "train_split, train_subset, transitions, input_key, label_key, and num_samples (mnist1d) or "
                        "seq_len (pydoc_text)")
