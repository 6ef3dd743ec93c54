"""English text that CPython ships, as byte-level language-modelling sequences (tfds, array_record).

The source is the interpreter's help topics, `pydoc_data.topics.topics`: the Language Reference
sections that `help('topic')` prints (79 documents, 466 KB of UTF-8 in CPython 3.11). Nothing
is downloaded, but the text is that of the running CPython, so a data dir prepared under another
Python version may hold different bytes.

Split: a topic goes to `validation` when zlib.crc32(name) mod 100 < 5, else to `train`: a stable
hash, so the split never depends on dictionary order (5 of the 79 topics, 6.5% of the bytes in
3.11). Within a split the topics, sorted by name, are encoded as UTF-8 and each is followed by a
NUL byte (end of document), giving one byte stream s. Example i is the window

    inputs  = s[i L : (i+1) L],    targets = s[i L + 1 : (i+1) L + 1],

with L = seq_len, for i < (len(s) − 1) // L (the tail shorter than a window is dropped). Both
are int32 [L] byte values in 0..255, so a model can shard them over the sequence axis as they
are: the target of every position sits at the same position.
"""
import dataclasses
import zlib

import numpy as np
import tensorflow_datasets as tfds
from pydoc_data.topics import topics

END_OF_DOCUMENT = b"\x00"
VALIDATION_PERCENT = 5


def is_validation(topic: str) -> bool:
  return zlib.crc32(topic.encode("utf-8")) % 100 < VALIDATION_PERCENT


def split_topics(split: str) -> list[str]:
  """The sorted names of the topics of 'train' or 'validation'."""
  return [t for t in sorted(topics) if is_validation(t) == (split == "validation")]


def byte_stream(names) -> np.ndarray:
  """The topics `names` as UTF-8, each followed by END_OF_DOCUMENT, as uint8 [n]."""
  data = b"".join(topics[name].encode("utf-8") + END_OF_DOCUMENT for name in names)
  return np.frombuffer(data, np.uint8)


def pack(stream: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Non-overlapping windows of `stream` and the windows one byte later: int32 [m, seq_len]."""
  m = (len(stream) - 1) // seq_len
  inputs = stream[:m * seq_len].reshape(m, seq_len)
  targets = stream[1:m * seq_len + 1].reshape(m, seq_len)
  return inputs.astype(np.int32), targets.astype(np.int32)


@dataclasses.dataclass
class PydocTextConfig(tfds.core.BuilderConfig):
  seq_len: int = 256


class PydocText(tfds.core.GeneratorBasedBuilder):
  """CPython's help topics as fixed-length byte sequences with next-byte targets."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      PydocTextConfig(name="seq256", seq_len=256),
      PydocTextConfig(name="seq1024", seq_len=1024),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    seq_len = self.builder_config.seq_len
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "inputs": tfds.features.Tensor(shape=(seq_len,), dtype=np.int32),
            "targets": tfds.features.Tensor(shape=(seq_len,), dtype=np.int32),
        }),
        homepage="https://github.com/python/cpython/tree/main/Lib/pydoc_data",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Shipped with CPython: nothing to download.
    return {split: self._generate_examples(split) for split in ("train", "validation")}

  def _generate_examples(self, split):
    inputs, targets = pack(byte_stream(split_topics(split)), self.builder_config.seq_len)
    for i, (x, y) in enumerate(zip(inputs, targets)):
      yield i, {"inputs": x, "targets": y}


def builder_config(seq_len: int) -> str | PydocTextConfig:
  """The config of sequences of `seq_len` bytes: a listed one by name, else a new 'seq<n>'."""
  name = f"seq{seq_len}"
  if name in PydocText.builder_configs:
    return name
  return PydocTextConfig(name=name, seq_len=seq_len)
