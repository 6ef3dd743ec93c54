"""The pydoc_text builder: CPython's help topics as packed byte windows with next-byte targets."""
import zlib

import ml_collections
import numpy as np
import pytest
from pydoc_data.topics import topics

from big_batch.data import datasets
from big_batch.data.builders import pydoc_text

SEQ_LEN = 256


def expected_stream(split):
  """The split's bytes as the builder's docstring defines them, computed here independently."""
  names = [t for t in sorted(topics)
           if (zlib.crc32(t.encode()) % 100 < 5) == (split == "validation")]
  return b"".join(topics[t].encode() + b"\0" for t in names)


def as_bytes(window):
  return bytes(window.astype(np.uint8))


def read_all(source):
  records = source.__getitems__(range(len(source)))
  return (np.stack([r["inputs"] for r in records]), np.stack([r["targets"] for r in records]))


@pytest.fixture(scope="module")
def sources(data_dir):
  builder = pydoc_text.PydocText(config="seq256", data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  return builder.as_data_source()


@pytest.mark.parametrize("split", ["train", "validation"])
def test_windows_tile_the_split_and_targets_are_the_next_bytes(sources, split):
  stream = expected_stream(split)
  inputs, targets = read_all(sources[split])
  assert inputs.dtype == targets.dtype == np.int32
  assert inputs.shape == targets.shape == ((len(stream) - 1) // SEQ_LEN, SEQ_LEN)
  np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
  # tfds stores examples in its own order (and some windows of help text repeat): compare
  # the (inputs, targets) pairs as a multiset with the windows at offsets 0, L, 2L, ...
  pairs = sorted(zip(map(as_bytes, inputs), map(as_bytes, targets)))
  expected = sorted((stream[i:i + SEQ_LEN], stream[i + 1:i + SEQ_LEN + 1])
                    for i in range(0, len(inputs) * SEQ_LEN, SEQ_LEN))
  assert pairs == expected


def test_windows_decode_to_the_help_text(sources):
  def decoded(source):
    return [as_bytes(x).decode("utf-8", errors="replace") for x in read_all(source)[0]]

  train, validation = decoded(sources["train"]), decoded(sources["validation"])
  # 'assert' is the first training topic, so a window starts with it; 'return' is held out.
  assert any(w.startswith('The "assert" statement\n') for w in train)
  phrase = 'The "return" statement\n'
  assert pydoc_text.is_validation("return") and phrase in topics["return"]
  assert any(phrase in w for w in validation) and not any(phrase in w for w in train)


def test_splits_are_disjoint_and_about_five_percent(sources):
  train, validation = expected_stream("train"), expected_stream("validation")
  held_out = pydoc_text.split_topics("validation")
  assert held_out and not set(held_out) & set(pydoc_text.split_topics("train"))
  assert all(topics[t].encode() not in train for t in held_out)
  for x in read_all(sources["validation"])[0]:
    assert as_bytes(x) not in train
  assert 0.02 < len(validation) / (len(train) + len(validation)) < 0.1
  assert len(sources["train"]) + len(sources["validation"]) > 1500  # 466 KB in 256-byte windows.


def test_preparation_is_deterministic(sources, tmp_path):
  again = pydoc_text.PydocText(config="seq256", data_dir=str(tmp_path),
                               file_format="array_record")
  again.download_and_prepare()
  for split in ("train", "validation"):
    for a, b in zip(read_all(sources[split]), read_all(again.as_data_source()[split])):
      np.testing.assert_array_equal(a, b)  # Same examples in the same order.


def test_load_by_sequence_length_keeps_features_as_stored(data_dir):
  config = ml_collections.ConfigDict(dict(name="pydoc_text", seq_len=64, data_dir=data_dir,
                                          in_memory=False))
  data = datasets.load(config)
  assert data.num_classes is None and data.input_shape is None
  assert data.train.num_examples == (len(expected_stream("train")) - 1) // 64
  batch = data.split("validation").read(np.array([3, 0]))
  assert set(batch) == {"inputs", "targets"}
  assert batch["inputs"].dtype == np.int32 and batch["inputs"].shape == (2, 64)
  np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
  assert pydoc_text.builder_config(256) == "seq256"
