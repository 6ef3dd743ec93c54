"""Batch sizes that change during a run, end to end: a fixed schedule, sizes a task decides
from its state, and rows a task selects. Each is preempted, resumed, and must equal an
uninterrupted run bitwise; compiles stay one per distinct size."""
import json
import os
import types

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from big_batch import tasks, train
from big_batch.tasks import supervised
from big_batch.train import loop


def growing(config, data, mesh, total_steps):
  """Asks for 10 + 15 t rows at step t (rounded up to the grid by the trainer)."""
  task = supervised.build(config, data, mesh, total_steps)
  return task._replace(batch_size=lambda state: 10 + 15 * state["step"])


def selecting(config, data, mesh, total_steps):
  """Trains on a seeded half of each candidate pool, the kept rows weighted 1..B."""
  task = supervised.build(config, data, mesh, total_steps)

  def select(state, candidates):
    rng = np.random.default_rng(int(jax.device_get(state["step"])))
    picked = rng.choice(candidates, len(candidates) // 2, replace=False)
    return state, {"index": picked, "weight": np.arange(1.0, len(picked) + 1, dtype=np.float32)}

  return task._replace(select=select)


@pytest.fixture
def config(quick_config, monkeypatch):
  for name, build in (("growing", growing), ("selecting", selecting)):
    monkeypatch.setitem(tasks.TASKS, name, types.SimpleNamespace(build=build,
                                                                 check=supervised.check))
  quick_config.model = dict(name="mlp", hidden=(16,), norm="none")  # Compiles fast.
  quick_config.evals = {}
  quick_config.num_steps, quick_config.log_every, quick_config.checkpoint_every = 12, 1, 100
  quick_config.batch.size = 32
  return quick_config


def preempt_at(monkeypatch, step):
  real = loop._PreemptionFlag.check

  def check(self, current):
    self.raised = self.raised or current == step
    return real(self, current)

  monkeypatch.setattr(loop._PreemptionFlag, "check", check)


def compiles(monkeypatch):
  """The jitted train steps of the runs that follow; `_cache_size()` counts their compiles."""
  made = []
  real = loop.setup

  def setup(*args):
    made.append(real(*args))
    return made[-1]

  monkeypatch.setattr(loop, "setup", setup)
  return made


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if "train/loss" in line]


def params(workdir, step):
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step),
                                                          "state"))
  return jax.tree.map(np.asarray, state["params"])


def assert_resume_is_exact(config, monkeypatch, tmp_path, stop_at=5):
  whole = train.run(config, str(tmp_path / "whole"))
  with monkeypatch.context() as patch:
    preempt_at(patch, stop_at)
    stopped = train.run(config, str(tmp_path / "resumed"))
  assert stopped["preempted"] and stopped["final_step"] == stop_at
  resumed = train.run(config, str(tmp_path / "resumed"))
  assert resumed["final_step"] == whole["final_step"]
  assert resumed["examples_seen"] == whole["examples_seen"]
  timeless = lambda workdir: [{k: v for k, v in r.items() if "examples_per_second" not in k}
                              for r in records(workdir)]
  assert timeless(tmp_path / "resumed") == timeless(tmp_path / "whole")
  step = whole["final_step"]
  jax.tree.map(np.testing.assert_array_equal, params(tmp_path / "whole", step),
               params(tmp_path / "resumed", step))
  return whole, records(tmp_path / "whole")


def test_a_fixed_schedule_changes_the_size_by_examples_seen(config, monkeypatch, tmp_path):
  config.batch.schedule = ((96, 64), (224, 128))
  config.num_steps = None
  config.num_examples = 1000
  made = compiles(monkeypatch)
  summary, logged = assert_resume_is_exact(config, monkeypatch, tmp_path)
  # 32 x 3 = 96; then 64 x 2 reaches 224; then 128 x 6 reaches 992 (a 7th would pass the
  # budget of 1000).
  assert [r["train/batch_size"] for r in logged] == [32] * 3 + [64] * 2 + [128] * 6
  assert [r["train/examples_seen"] for r in logged][-1] == summary["examples_seen"] == 992
  assert summary["total_steps"] == 11
  assert made[0].train_step._cache_size() == 3  # One compile per distinct size.


def test_sizes_a_task_decides_are_rounded_to_the_grid(config, monkeypatch, tmp_path):
  config.task = "growing"
  config.batch.grid = 64
  made = compiles(monkeypatch)
  _, logged = assert_resume_is_exact(config, monkeypatch, tmp_path)
  asked = [10 + 15 * t for t in range(12)]
  assert [r["train/batch_size"] for r in logged] == [-(-a // 64) * 64 for a in asked]
  assert made[0].train_step._cache_size() == 3  # 64, 128, 192: one compile each.


def test_rows_a_task_selects_are_trained_on_with_their_weights(config, monkeypatch, tmp_path):
  config.task = "selecting"
  config.batch.pool_size = 64
  summary, logged = assert_resume_is_exact(config, monkeypatch, tmp_path)
  assert [r["train/batch_size"] for r in logged] == [32] * 12
  assert summary["examples_seen"] == 12 * 32
