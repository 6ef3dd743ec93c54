"""Global batches: the order a pure function of (seed, examples drawn), sharded, eval padding."""
import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from big_batch.data import pipeline
from big_batch.data.datasets import Split


def toy_split(n):
  inputs = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
  return Split(n, lambda idx: {"input": inputs[idx], "label": idx.astype(np.int32)})


def mesh8():
  return jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))


def test_the_stream_is_a_concatenation_of_seeded_epoch_permutations():
  n = 103
  # Written out independently: epoch e is default_rng((seed, e)).permutation(n).
  expected = np.concatenate([np.random.default_rng((7, e)).permutation(n) for e in range(3)])
  got = np.concatenate([pipeline.stream_indices(7, p, 50, n) for p in range(0, 300, 50)]
                       + [pipeline.stream_indices(7, 300, 9, n)])
  np.testing.assert_array_equal(got, expected)
  for epoch in range(3):
    assert sorted(got[epoch * n:(epoch + 1) * n]) == list(range(n))  # Each example once.
  assert not np.array_equal(got[:n], got[n:2 * n])
  other_seed = pipeline.stream_indices(8, 0, n, n)
  assert not np.array_equal(other_seed, expected[:n])


def test_batches_of_any_sizes_read_consecutive_stream_positions():
  n, seed = 50, 3
  stream = np.concatenate([np.random.default_rng((seed, e)).permutation(n) for e in range(4)])
  position = 0
  for size in (7, 16, 1, 40, 33, 50):  # Some batches straddle two epochs.
    np.testing.assert_array_equal(pipeline.stream_indices(seed, position, size, n),
                                  stream[position:position + size])
    position += size


def test_a_batch_larger_than_the_data_set_is_a_clear_error():
  with pytest.raises(ValueError, match="a batch of 128 rows exceeds the 64 training examples"):
    pipeline.stream_indices(0, 0, 128, 64)


def test_reader_gives_global_arrays_sharded_over_the_batch_axis():
  sharding = NamedSharding(mesh8(), P("data"))
  reader = pipeline.BatchReader(toy_split(64), sharding)
  indices = np.array([5, 9, 1, 0, 63, 2, 3, 4, 8, 7, 6, 10, 11, 12, 13, 14])
  batch = reader.read(indices, extra={"weight": np.arange(16, dtype=np.float32)})
  assert batch["input"].shape == (16, 3)
  assert batch["input"].sharding.is_equivalent_to(sharding, 2)
  assert {s.data.shape for s in batch["input"].addressable_shards} == {(2, 3)}
  np.testing.assert_array_equal(batch["label"], indices)
  np.testing.assert_array_equal(batch["weight"], np.arange(16))


def test_reading_ahead_on_a_thread_gives_the_inline_batches():
  split, sharding = toy_split(64), NamedSharding(mesh8(), P("data"))
  reader = pipeline.BatchReader(split, sharding)
  indices_of = lambda step: pipeline.stream_indices(5, 16 * step, 16, 64)
  inline = list(pipeline.read_ahead(reader, indices_of, range(3, 11), prefetch=0))
  prefetched = list(pipeline.read_ahead(reader, indices_of, range(3, 11), prefetch=4))
  assert len(inline) == len(prefetched) == 8
  for step, a, b in zip(range(3, 11), inline, prefetched):
    np.testing.assert_array_equal(a["label"], indices_of(step))
    np.testing.assert_array_equal(a["input"], b["input"])
    assert a["input"].sharding.is_equivalent_to(b["input"].sharding, 2)


def test_eval_batches_cover_the_split_once_with_a_mask():
  sharding = NamedSharding(mesh8(), P("data"))
  batches = list(pipeline.eval_batches(toy_split(21), batch_size=8, sharding=sharding))
  assert len(batches) == 3
  labels = np.concatenate([np.asarray(b["label"]) for b in batches])
  mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
  assert mask.sum() == 21
  np.testing.assert_array_equal(labels[mask == 1], np.arange(21))
