"""The decentralized task (tasks/decentralized.py) through the trainer on 8 simulated devices."""
import math
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import PartitionSpec as P

from big_batch import tasks, train
from big_batch.checks import ConfigError
from big_batch.data import datasets
from big_batch.train import loop
from conftest import load_config


@pytest.fixture
def config(data_dir):
  """configs/mnist1d_dproxsgt.py:quick with 8 workers (one per device), i.i.d. data."""
  config = load_config("mnist1d_dproxsgt", "quick")
  config.data.data_dir = data_dir
  config.decentralized.workers = 8
  config.decentralized.partition = "iid"
  config.batch.size = 8 * 4
  config.mesh.worker, config.mesh.data = -1, 1
  config.num_steps = 6
  config.log_every = 3
  config.evals.test.every = 6
  config.checkpoint_every = 6
  return config


def test_trains_through_the_trainer_with_one_worker_per_device(config, tmp_path):
  summary = train.run(config, str(tmp_path / "run"))
  assert summary["complete"] and summary["examples_seen"] == 6 * 32
  state = ocp.StandardCheckpointer().restore(os.path.join(tmp_path, "run", "checkpoints", "6",
                                                          "state"))
  x = state["x"]
  params = sum(math.prod(v.shape[1:]) for v in jax.tree.leaves(x))
  assert all(v.shape[0] == 8 for v in jax.tree.leaves(state))
  # Two rounds (y then x) to two ring neighbours of dense float32 parameters per step.
  assert summary["train"]["bytes_sent"] == 2 * 2 * 4 * params
  rho = max(abs(1 + 2 * np.cos(2 * np.pi * k / 8)) / 3 for k in range(1, 8))  # 8-ring.
  assert summary["train"]["spectral_gap"] == pytest.approx(1 - rho, rel=1e-5)
  test = summary["evals"]["test"]
  leaves = jax.tree.leaves(x)
  consensus = sum(float(np.sum((v - v.mean(0)) ** 2)) for v in leaves)
  assert test["consensus_error"] == pytest.approx(consensus, rel=1e-4) and consensus > 0
  assert test["accuracy"] > 0.12  # Above chance (0.1) after 6 steps.


def test_state_is_sharded_over_the_worker_axis_not_replicated(config):
  mesh = jax.make_mesh((1, 1, 1, 8), ("data", "fsdp", "seq", "worker"))
  data = datasets.load(config.data)
  task = tasks.build(config, data, mesh, 10)
  setup = loop.setup(config, mesh, task)
  for leaf in jax.tree.leaves(setup.state_sharding):
    assert leaf.spec == P("worker")
  assert task.batch_axes == ("worker",)


def test_label_split_feeds_each_worker_its_two_classes(config):
  config.decentralized.workers = 5
  config.decentralized.partition = "label"
  config.batch.size = 5 * 6
  mesh = jax.make_mesh((1, 1, 1, 5), ("data", "fsdp", "seq", "worker"),
                       devices=jax.devices()[:5])
  data = datasets.load(config.data)
  task = tasks.build(config, data, mesh, 10)
  labels = data.train.read(np.arange(data.train.num_examples))["label"]
  _, rows = task.select(None, np.random.default_rng(0).permutation(data.train.num_examples)[:30])
  for i in range(5):
    assert set(labels[rows[6 * i:6 * i + 6]].tolist()) <= {i, 9 - i}


@pytest.mark.parametrize("field, value, message", [
    ("decentralized.algorithm", "gossip", r"algorithm='gossip' is not one of"),
    ("decentralized.workers", 24, r"workers=24 must divide config.batch.size=32"),
    ("decentralized.mixing", ((0.5, 0.5), (0.5, 0.5)), r"has shape \(2, 2\); it must be \(8, 8\)"),
    ("decentralized.compressor", dict(name="top_k", fraction=0.3),
     r"(?s)compressor=.* is only used by \('cdproxsgt', 'choco'\)"),
    ("decentralized.gamma_x", 1.5, r"gamma_x=1.5 .* must be in \(0, 1\]"),
    ("optimizer.momentum", 0.9, r"momentum=0.9 must be 0"),
    ("model.norm", "batch", r"norm='batch' must be 'none'"),
])
def test_bad_fields_are_named_before_anything_runs(config, tmp_path, field, value, message):
  section, key = field.rsplit(".", 1)
  config[section] = {**config[section].to_dict(), key: value}  # Any type, e.g. a matrix.
  with pytest.raises(ConfigError, match=message):
    train.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_mixing_matrix_that_is_not_doubly_stochastic_is_refused(config, tmp_path):
  w = np.eye(8) * 0.5
  w[0, 1] = 0.5
  config.decentralized = {**config.decentralized.to_dict(),
                          "mixing": tuple(map(tuple, w.tolist()))}
  with pytest.raises(ConfigError, match=r"config.decentralized.mixing=.* is not symmetric"):
    train.run(config, str(tmp_path / "run"))
