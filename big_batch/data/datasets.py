"""Data sets by name, read through tfds data sources (array_record), as arrays or records.

`load(config.data)` prepares the offline builders (mnist1d, digits, pydoc_text) on first use
in `config.data.data_dir` and opens standard tfds data sets (cifar10, mnist, ...) that are
already prepared there; nothing is downloaded. Examples are stacked per feature. In
classification data (a `label_key` feature) every example becomes
{'input': float32 array, 'label': int32}, uint8 images scaled to [0, 1]; other data sets
(pydoc_text: {'inputs', 'targets'} int32 byte sequences) keep their features as stored.
"""
import dataclasses
import os
from typing import Callable, Sequence

import numpy as np
import tensorflow_datasets as tfds

from big_batch.data.builders import digits, mnist1d, pydoc_text

# Builders that generate their data offline: name -> (builder class, default variant).
OFFLINE_BUILDERS = {
    "mnist1d": (mnist1d.Mnist1d, "standard"),
    "digits": (digits.Digits, None),
    "pydoc_text": (pydoc_text.PydocText, "seq256"),
}


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: `read(indices)` returns the examples at `indices` as stacked arrays."""
  num_examples: int
  read: Callable[[np.ndarray], dict]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Two splits; `num_classes` and `input_shape` are None for data without class labels."""
  train: Split
  test: Split
  num_classes: int | None
  input_shape: tuple | None


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
  n = len(source)
  if in_memory:
    arrays = stack(source.__getitems__(range(n)))
    return Split(n, lambda idx: {k: v[idx] for k, v in arrays.items()})
  return Split(n, lambda idx: stack(source.__getitems__(idx.tolist())))


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
  builder = cls(**kwargs)
  builder.download_and_prepare()
  return builder


def load(config) -> Dataset:
  """The data set `config.name` with splits `config.train_split` and `config.eval_split`."""
  data_dir = config.get("data_dir") or default_data_dir()
  if config.name in OFFLINE_BUILDERS:
    tfds.display_progress_bar(False)
    builder = _builder(config, data_dir)
  else:
    try:
      builder = tfds.builder(config.name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise ValueError(f"config.data.name={config.name!r} is neither an offline data set "
                       f"{sorted(OFFLINE_BUILDERS)} nor a tfds data set") from e
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
  sources = builder.as_data_source()
  in_memory = config.get("in_memory", True)
  train = _split(sources[config.get("train_split", "train")], stack, in_memory)
  test = _split(sources[config.get("eval_split", "test")], stack, in_memory)
  return Dataset(train=train, test=test, num_classes=num_classes, input_shape=input_shape)
