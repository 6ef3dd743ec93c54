"""Global batches: order a pure function of (seed, step), sharded over the mesh, eval padding."""
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


def test_each_epoch_visits_every_example_once_in_a_seeded_order():
  n, b = 103, 10  # 10 steps per epoch; 3 examples dropped per epoch.
  epoch0 = np.concatenate([pipeline.batch_indices(0, s, n, b) for s in range(10)])
  epoch1 = np.concatenate([pipeline.batch_indices(0, s, n, b) for s in range(10, 20)])
  assert len(set(epoch0)) == 100 and len(set(epoch1)) == 100
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(pipeline.batch_indices(0, 13, n, b),
                                pipeline.batch_indices(0, 13, n, b))
  assert not np.array_equal(pipeline.batch_indices(1, 3, n, b), pipeline.batch_indices(0, 3, n, b))


def test_resumed_stream_equals_the_tail_of_the_full_stream():
  split, sharding = toy_split(64), NamedSharding(mesh8(), P("data"))
  full = list(pipeline.train_batches(split, batch_size=16, seed=3, start_step=0, num_steps=12,
                                     sharding=sharding))
  tail = list(pipeline.train_batches(split, batch_size=16, seed=3, start_step=7, num_steps=12,
                                     sharding=sharding))
  assert len(full) == 12 and len(tail) == 5
  for a, b in zip(full[7:], tail):
    np.testing.assert_array_equal(a["label"], b["label"])
  np.testing.assert_array_equal(np.asarray(full[5]["label"]),
                                pipeline.batch_indices(3, 5, 64, 16))


def test_batches_are_global_arrays_sharded_over_the_batch_axis():
  sharding = NamedSharding(mesh8(), P("data"))
  batch = next(pipeline.train_batches(toy_split(64), batch_size=16, seed=0, start_step=0,
                                      num_steps=1, sharding=sharding))
  assert batch["input"].shape == (16, 3)
  assert batch["input"].sharding.is_equivalent_to(sharding, 2)
  assert {s.data.shape for s in batch["input"].addressable_shards} == {(2, 3)}


def test_eval_batches_cover_the_split_once_with_a_mask():
  sharding = NamedSharding(mesh8(), P("data"))
  batches = list(pipeline.eval_batches(toy_split(21), batch_size=8, sharding=sharding))
  assert len(batches) == 3
  labels = np.concatenate([np.asarray(b["label"]) for b in batches])
  mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
  assert mask.sum() == 21
  np.testing.assert_array_equal(labels[mask == 1], np.arange(21))


def test_batch_larger_than_the_data_set_is_a_clear_error():
  with pytest.raises(ValueError, match="batch_size=128 exceeds the 64 training examples"):
    pipeline.train_batches(toy_split(64), batch_size=128, seed=0, start_step=0, num_steps=1,
                           sharding=NamedSharding(mesh8(), P("data")))


def test_inline_reading_gives_the_same_batches_as_grain_prefetch():
  split, sharding = toy_split(64), NamedSharding(mesh8(), P("data"))
  kwargs = dict(batch_size=16, seed=5, start_step=3, num_steps=11, sharding=sharding)
  inline = list(pipeline.train_batches(split, prefetch=0, **kwargs))
  prefetched = list(pipeline.train_batches(split, prefetch=4, **kwargs))
  assert len(inline) == len(prefetched) == 8
  for a, b in zip(inline, prefetched):
    np.testing.assert_array_equal(a["input"], b["input"])
    assert a["input"].sharding.is_equivalent_to(b["input"].sharding, 2)
