"""Batch active learning's training round through the trainer: the `regression` builder is
regression_data's arrays split and standardised; the `regression` task trains by MSE on the
labelled rows (`config.data.train_subset`) only; `trained_model` gives back the network the
run evaluated, for `select_batch`."""
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from big_batch import train
from big_batch.data import datasets
from big_batch.parallel import mesh as mesh_lib
from big_batch.selection import regression_builder, regression_data, regression_task
from big_batch.selection.bmdal import select_batch
from conftest import load_config


def test_the_builder_is_the_standardised_fixed_split_of_the_sklearn_arrays(data_dir):
  config = load_config("active_learning", "quick")
  config.data.data_dir = data_dir
  data = datasets.load(config.data)
  x, y = regression_data.diabetes()
  train_rows, test_rows = regression_builder.split_rows(len(x))
  x, y = regression_data.standardize(x, y, train_rows)
  for split, rows in (("train", train_rows), ("test", test_rows)):
    s = data.split(split)
    got = s.read(np.arange(s.num_examples))
    assert s.num_examples == len(rows)
    # tfds may store examples in another order: compare as sets of rows.
    order = np.lexsort(got["input"].T)
    want = np.lexsort(x[rows].T)
    np.testing.assert_allclose(got["input"][order], x[rows][want], rtol=1e-6)
    np.testing.assert_allclose(got["target"][order], y[rows, 0][want], rtol=1e-5, atol=1e-6)
  assert abs(float(data.train.read(np.arange(len(train_rows)))["target"].mean())) < 1e-5


@pytest.fixture(scope="module")
def labelled_round(data_dir, tmp_path_factory):
  """A 20-step round on 32 labelled rows, logging every step: (config, data, rows, workdir)."""
  workdir = str(tmp_path_factory.mktemp("al_round"))
  rows = np.random.default_rng(0).choice(353, 32, replace=False)
  np.save(os.path.join(workdir, "labelled.npy"), rows)
  config = load_config("active_learning", "quick")
  config.data.data_dir = data_dir
  config.data.train_subset = os.path.join(workdir, "labelled.npy")
  config.log_every = 1
  summary = train.run(config, os.path.join(workdir, "run"))
  full = load_config("active_learning", "quick")
  full.data.data_dir = data_dir
  return config, datasets.load(full.data), rows, os.path.join(workdir, "run"), summary


def test_the_first_loss_is_the_mse_of_the_initial_network_on_the_labelled_rows(labelled_round):
  config, data, rows, workdir, _ = labelled_round
  task = regression_task.build(config, data, mesh_lib.create(config.mesh), total_steps=20)
  state = task.init(jax.random.key(config.seed))
  model = regression_task.new_model(config, 10, jax.random.key(0))
  graphdef, params = nnx.split(model, nnx.Param)
  params.replace_by_pure_dict(state["params"])
  model = nnx.merge(graphdef, params)
  batch = data.train.read(rows)
  expected = float(np.mean((np.asarray(model(batch["input"]))[:, 0] - batch["target"]) ** 2))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    first = next(r for r in map(json.loads, f) if "train/loss" in r)
  # Batch 32 = the 32 labelled rows: the first step's loss is their MSE, whatever the order.
  assert first["step"] == 1
  np.testing.assert_allclose(first["train/loss"], expected, rtol=1e-5)


def test_trained_model_is_the_network_the_run_evaluated(labelled_round):
  config, data, rows, workdir, summary = labelled_round
  model = regression_task.trained_model(workdir, config, 10)
  test = data.split("test").read(np.arange(data.split("test").num_examples))
  residual = np.asarray(model(test["input"]))[:, 0] - test["target"]
  np.testing.assert_allclose(summary["evals"]["test"]["rmse"], np.sqrt(np.mean(residual ** 2)),
                             rtol=1e-5)
  np.testing.assert_allclose(summary["evals"]["test"]["mae"], np.mean(np.abs(residual)),
                             rtol=1e-5)
  # And select_batch takes it: a gradient-kernel LCMD batch from the unlabelled rows.
  x = data.train.read(np.arange(data.train.num_examples))["input"]
  pool = np.setdiff1d(np.arange(len(x)), rows)
  picked = select_batch([model], x[rows], x[pool], 8, key=jax.random.key(0), kernel="grad",
                        transforms=[("sketch", 64)], method="lcmd")
  assert len(set(picked.tolist())) == 8 and set(pool[picked]).isdisjoint(rows)
