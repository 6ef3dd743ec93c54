"""The Cephalo planner (parallel/planner.py) against brute force and its constraints."""
import itertools
import json
import math

import pytest

from big_batch.parallel import planner

GB = 1e9


def device(name, speed=1.0, memory=16 * GB, sizes=(2, 4, 8, 16), per_row_bytes=0.25 * GB,
           overhead=0.002):
  """Time per micro-batch affine in m (a fixed launch cost plus per-row work), activations
  linear in m."""
  return planner.DeviceProfile(
      name, memory, {m: (overhead + 0.001 * m) / speed for m in sizes},
      {m: per_row_bytes * m for m in sizes})


def brute_force_time(profiles, batch, m):
  """min over every split sum b_i = B, b_i >= 1, of max_i ceil(b_i / m) t_i(m)."""
  best = math.inf
  for rows in itertools.product(range(1, batch + 1), repeat=len(profiles) - 1):
    last = batch - sum(rows)
    if last < 1:
      continue
    split = (*rows, last)
    best = min(best, max(-(-b // m) * p.step_seconds[m] for b, p in zip(split, profiles)))
  return best


@pytest.mark.parametrize("speeds, batch", [((1, 1), 20), ((1, 4), 24), ((1, 2, 3), 18),
                                           ((3, 1, 1), 13)])
def test_the_plan_is_as_fast_as_the_best_split(speeds, batch):
  profiles = [device(f"d{i}", s) for i, s in enumerate(speeds)]
  best = planner.plan(profiles, batch, state_bytes=GB)
  optimum = min(brute_force_time(profiles, batch, m) for m in profiles[0].sizes)
  assert best.iteration_seconds == pytest.approx(optimum, rel=1e-9)
  assert best.global_batch == batch and min(best.rows) >= 1
  assert best.accumulation == tuple(-(-b // m) for b, m in zip(best.rows, best.micro_batches))


@pytest.mark.parametrize("n, batch", [(2, 64), (4, 256), (3, 100), (8, 1000)])
def test_a_homogeneous_cluster_gets_the_even_split(n, batch):
  best = planner.plan([device(f"d{i}") for i in range(n)], batch, state_bytes=GB)
  assert max(best.rows) - min(best.rows) <= 1 and sum(best.rows) == batch
  assert best.state_shares == pytest.approx([1 / n] * n)


def test_a_faster_device_gets_more_rows_in_proportion():
  best = planner.plan([device("fast", 4.0), device("slow", 1.0)], 1000, state_bytes=GB)
  assert best.rows[0] / best.rows[1] == pytest.approx(4.0, rel=0.1)


def test_memory_limits_shrink_the_micro_batch_and_are_respected():
  # The small device fits activations of at most 4 rows beside its half of the state.
  small = device("small", 4.0, memory=1.0 * GB + 1.0 * GB)
  big = device("big", 1.0, memory=32 * GB)
  best = planner.plan([small, big], 256, state_bytes=2 * GB)
  assert best.micro_batches == (4, 4)  # One SPMD program: the common size that fits.
  for used, limit in zip(best.memory_bytes, best.memory_limits):
    assert used <= limit
  free = planner.plan([small, big], 256, state_bytes=2 * GB, spmd=False)
  assert free.micro_batches[0] <= 4 and free.micro_batches[1] == 16
  assert sum(free.state_shares) == pytest.approx(1.0)
  # The state follows free memory, not the batch share: the slow big device holds most.
  assert free.state_shares[1] > 0.9 and free.rows[0] > free.rows[1]
  for used, limit in zip(free.memory_bytes, free.memory_limits):
    assert used <= limit * (1 + 1e-12)


def test_no_fitting_micro_batch_names_the_tightest_device():
  with pytest.raises(ValueError, match="no micro-batch size fits: device 'tiny'"):
    planner.plan([device("tiny", memory=0.1 * GB), device("big")], 64, state_bytes=GB)


def test_planned_beats_even_at_1_to_4_as_the_ideal_says():
  profiles = [device("fast", 4.0), device("slow", 1.0)]
  even = planner.even_split(profiles, 512, GB, micro_batch=16)
  best = planner.plan(profiles, 512, GB)
  ideal = (4.0 + 1.0) / (2 * 1.0)  # sum speed_i / (n min speed_i)
  assert best.throughput() / even.throughput() >= 0.9 * ideal


def test_profiles_round_trip_and_the_command_line(tmp_path, capsys):
  path = tmp_path / "profiles.json"
  planner.save_profiles(str(path), [device("a", 2.0), device("b")], state_bytes=GB,
                        communication_seconds=0.01)
  profiles, state, comm = planner.load_profiles(str(path))
  assert profiles[0] == device("a", 2.0) and state == GB and comm == 0.01
  assert planner.main(["--profiles", str(path), "--batch", "96"]) == 0
  out = capsys.readouterr().out
  assert "| a |" in out and "Predicted iteration" in out and "--config.heterogeneous.rows=" in out
  path.write_text(json.dumps({"devices": [{"name": "x"}]}))
  assert planner.main(["--profiles", str(path), "--batch", "96"]) == 2
  assert "not a profile file" in capsys.readouterr().err


def test_bad_profiles_are_named():
  with pytest.raises(ValueError, match="device 'x': step_seconds and activation_bytes"):
    planner.DeviceProfile("x", GB, {1: 0.1}, {2: 1.0})
  with pytest.raises(ValueError, match="memory_bytes=0"):
    planner.DeviceProfile("x", 0, {1: 0.1}, {1: 1.0})
