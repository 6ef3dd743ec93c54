"""The heterogeneous task (tasks/heterogeneous.py) through the trainer, on 8 simulated devices."""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from big_batch import train
from big_batch.checks import ConfigError
from big_batch.train import loop
from conftest import load_config

ROWS = (20, 4, 4, 12, 8, 4, 8, 4)  # Sums to 64, over the 8 devices of the suite.


@pytest.fixture
def config(data_dir):
  config = load_config("mnist1d_heterogeneous", "quick")
  config.data.data_dir = data_dir
  config.heterogeneous.rows = ROWS
  config.heterogeneous.micro_batch = 4
  config.heterogeneous.slowdown = (1, 2, 1, 3, 1, 1, 2, 1)
  config.evals = {}
  return config


def final_params(workdir, step):
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step),
                                                          "state"))
  return jax.tree.map(np.asarray, state)


def test_uneven_devices_train_like_the_supervised_task_on_the_same_batches(config, tmp_path):
  summary = train.run(config, str(tmp_path / "uneven"))
  assert summary["examples_seen"] == 12 * 64  # Padding rows are not examples.
  plain = config.copy_and_resolve_references()
  plain.task = "supervised"
  del plain.heterogeneous
  plain.batch.accumulation_steps = 1
  train.run(plain, str(tmp_path / "plain"))
  got, want = final_params(tmp_path / "uneven", 12), final_params(tmp_path / "plain", 12)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               got["params"], want["params"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               got["opt_state"], want["opt_state"])


def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(config, tmp_path, monkeypatch):
  whole = train.run(config, str(tmp_path / "whole"))
  real = loop._PreemptionFlag.check

  def check(self, current):
    self.raised = self.raised or current == 4  # At a log boundary.
    return real(self, current)

  with monkeypatch.context() as patch:
    patch.setattr(loop._PreemptionFlag, "check", check)
    assert train.run(config, str(tmp_path / "resumed"))["preempted"]
  resumed = train.run(config, str(tmp_path / "resumed"))
  assert resumed["final_step"] == whole["final_step"] == 12
  jax.tree.map(np.testing.assert_array_equal, final_params(tmp_path / "resumed", 12),
               final_params(tmp_path / "whole", 12))
  with open(tmp_path / "whole" / "metrics.jsonl") as f:
    losses = [json.loads(line)["train/loss"] for line in f if "train/loss" in line]
  with open(tmp_path / "resumed" / "metrics.jsonl") as f:
    assert [json.loads(line)["train/loss"] for line in f if "train/loss" in line] == losses


@pytest.mark.parametrize("field, value, message", [
    ("heterogeneous.rows", (8,) * 7 + (9,), r"rows has 8 entries|sums to 65, not config.batch.size=64"),
    ("heterogeneous.rows", (16,) * 4, r"has 4 entries for 8 devices"),
    ("heterogeneous.rows", (0, 8, 8, 8, 8, 8, 8, 16), r"must be a tuple of positive integers"),
    ("heterogeneous.slowdown", (1, 2), r"slowdown=\(1, 2\) must be one positive integer per "
                                       "device"),
    ("heterogeneous.micro_batch", 0, r"micro_batch=0 must be a positive integer"),
    ("model.norm", "batch", r"config.model.norm='batch' must be 'none' for the heterogeneous "
                            "task"),
    ("sharding", "fsdp", r"config.sharding='fsdp' must be 'replicated'"),
])
def test_bad_fields_are_named_before_anything_runs(config, tmp_path, field, value, message):
  section, key = field.rsplit(".", 1) if "." in field else ("", field)
  node = config
  for part in filter(None, section.split(".")):
    node = node[part]
  node[key] = value
  with pytest.raises(ConfigError, match=message):
    train.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "checkpoints").exists()
