"""The feed: which stream rows each step reads, for fixed, scheduled, task-decided sizes and
task selection; and its counters."""
import types

import jax
import numpy as np
import ml_collections
from jax.sharding import NamedSharding, PartitionSpec as P

from big_batch.data import pipeline
from big_batch.data.datasets import Split
from big_batch.train.batch_plan import BatchPlan
from big_batch.train.feed import Feed, Progress

N, SEED = 100, 4


def split():
  return Split(N, lambda idx: {"index": np.asarray(idx, np.int32)})


def stream(length):
  return np.concatenate([np.random.default_rng((SEED, e)).permutation(N)
                         for e in range(length // N + 1)])[:length]


def feed(task, prefetch=0, pool_size=None, progress=None, **batch):
  config = ml_collections.ConfigDict({"batch": {"size": 8, **batch}, "num_steps": 50})
  mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  return Feed(task, BatchPlan(config, N, 1), split(), seed=SEED,
              sharding=NamedSharding(mesh, P("data")), prefetch=prefetch, pool_size=pool_size,
              progress=progress or Progress())


def rows(f, state, steps):
  out = []
  for _ in range(steps):
    size = f.next_size(state)
    state, batch = f.next(state, size)
    out.append(np.asarray(batch["index"]))
  return out


PLAIN = types.SimpleNamespace(batch_size=None, select=None)


def test_fixed_and_scheduled_sizes_read_consecutive_stream_rows_inline_and_ahead():
  for prefetch in (0, 3):
    f = feed(PLAIN, prefetch=prefetch, schedule=((30, 16),))
    got = rows(f, None, 6)  # 8, 8, 8, 8 (32 >= 30), then 16, 16.
    assert [len(r) for r in got] == [8, 8, 8, 8, 16, 16]
    np.testing.assert_array_equal(np.concatenate(got), stream(64))
    assert f.progress == Progress(step=6, position=64, examples_seen=64)


def test_a_resumed_feed_continues_the_same_rows():
  whole = rows(feed(PLAIN, schedule=((30, 16),)), None, 8)
  resumed = rows(feed(PLAIN, schedule=((30, 16),),
                      progress=Progress(step=5, position=48, examples_seen=48)), None, 3)
  for a, b in zip(whole[5:], resumed):
    np.testing.assert_array_equal(a, b)


def test_task_sizes_are_rounded_to_the_grid():
  task = types.SimpleNamespace(batch_size=lambda state: state, select=None)
  f = feed(task, grid=4)
  got = [len(rows(f, asked, 1)[0]) for asked in (1, 5, 8, 9, 1000)]
  assert got == [4, 8, 8, 12, 100]
  assert f.progress.position == 4 + 8 + 8 + 12 + 100


def test_selection_draws_a_pool_and_trains_on_the_rows_and_weights_it_returns():
  def select(state, candidates):
    assert len(candidates) == 20
    picked = candidates[::4]
    return state + 1, {"index": picked, "weight": np.arange(1, len(picked) + 1, dtype=np.float32)}

  f = feed(types.SimpleNamespace(batch_size=None, select=select), pool_size=20)
  state = 0
  for step in range(3):
    size = f.next_size(state)
    state, batch = f.next(state, size)
    np.testing.assert_array_equal(batch["index"], stream(60)[20 * step:20 * (step + 1)][::4])
    np.testing.assert_array_equal(batch["weight"], np.arange(1, 6))
  assert state == 3
  assert f.progress == Progress(step=3, position=60, examples_seen=15)
  assert pipeline.stream_indices(SEED, 60, 5, N).tolist() == stream(65)[60:].tolist()


def test_selected_rows_of_weight_zero_are_padding_not_examples_seen():
  def select(state, candidates):  # Each candidate, then as many padding rows.
    index = np.concatenate([candidates, candidates])
    return state, {"index": index, "weight": np.repeat([1.0, 0.0], len(candidates))}

  f = feed(types.SimpleNamespace(batch_size=None, select=select), pool_size=8)
  for _ in range(2):
    _, batch = f.next(None, f.next_size(None))
    assert len(batch["index"]) == 16
  assert f.progress == Progress(step=2, position=16, examples_seen=16)
