"""The 'mclrec' task (recsys/task.py): each of the code's three steps updates only its own
parameters (theta, phi, theta); CL4SRec with lambda = 0 is SASRec; bad config values fail
before anything is built; and a :quick MCLRec run through the trainer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch import train
from big_batch.checks import ConfigError
from big_batch.data.datasets import Dataset, Split
from big_batch.recsys import sequences, task as rec_task
from big_batch.train.validate import validate
from conftest import load_config


def tiny_data():
  seqs, _ = sequences.reindex(sequences.k_core(sequences.synthetic_sequences(60, 20, 2, 0), 5))
  splits = {}
  for name, rows in sequences.leave_one_out(seqs, 10).items():
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    splits[name] = Split(len(rows), lambda idx, a=arrays: {k: v[idx] for k, v in a.items()})
  return Dataset(splits=splits, num_classes=None, input_shape=None)


DATA = tiny_data()


def tiny_config(method, **mclrec):
  config = load_config("recsys_mclrec", "quick")
  config.model.update(hidden=8, inner=16)
  config.mclrec.method = method
  config.mclrec.update(mclrec)
  return config


def batch(rows=6):
  rows = DATA.splits["train"].read(np.arange(rows))
  return {k: jnp.asarray(v) for k, v in rows.items()}


def same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)


def test_three_steps_each_move_only_their_own_parameters():
  steps = rec_task.build_steps(tiny_config("mclrec"), DATA, 10)
  state = steps.init(jax.random.key(0))
  encoder_step, augmenter_step = jax.jit(steps.encoder_step), jax.jit(steps.augmenter_step)
  b = batch()
  _, views, keys = steps.step_inputs(state, b)
  s1, m1 = encoder_step(state, b, views, keys[0])
  assert not same(s1["params"]["encoder"], state["params"]["encoder"])
  assert same(s1["params"]["augmenters"], state["params"]["augmenters"])  # phi fixed in 1.
  s2, _ = augmenter_step(s1, b, views, keys[1])
  assert same(s2["params"]["encoder"], s1["params"]["encoder"])  # theta fixed in 2.
  assert not same(s2["params"]["augmenters"], s1["params"]["augmenters"])
  assert same(s2["opt_state"], s1["opt_state"])  # theta's Adam state too.
  s3, _ = encoder_step(s2, b, views, keys[2])
  assert not same(s3["params"]["encoder"], s2["params"]["encoder"])
  assert same(s3["params"]["augmenters"], s2["params"]["augmenters"])  # phi fixed in 3.
  assert same(s3["augmenter_opt_state"], s2["augmenter_opt_state"])
  assert int(s3["encoder_updates"]) == 2
  # L0 = L_rec + lambda L_cl1 + beta (L_cl2 + R), L1 = L_cl2 + R (beta-free), as logged.
  lmd, beta = 0.1, 0.1
  np.testing.assert_allclose(m1["loss"], m1["rec"] + lmd * m1["cl1"]
                             + beta * (m1["cl2"] + m1["regularizer"]), rtol=1e-5)


@pytest.mark.slow  # Two more compiles (~35 s on 2 loaded cores).
def test_cl4srec_with_lambda_zero_is_sasrec():
  b = batch()
  outs = {}
  for method, extra in (("sasrec", {}), ("cl4srec", {"lmd": 0.0})):
    steps = rec_task.build_steps(tiny_config(method, **extra), DATA, 10)
    outs[method] = jax.jit(steps.train_step)(steps.init(jax.random.key(0)), b)[0]
  close(outs["sasrec"]["params"], outs["cl4srec"]["params"])
  assert "augmenters" not in outs["cl4srec"]["params"]


@pytest.mark.parametrize("field,value,message", [
    ("mclrec.method", "duorec", "'duorec' is not one of"),
    ("mclrec.crop_ratio", 0.7, r"0.7 must be a number in \[0, 0.5\]"),
    ("batch.accumulation_steps", 2, "in-batch negatives"),
])
def test_bad_values_fail_before_anything_is_built(field, value, message):
  config = load_config("recsys_mclrec", "quick")
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(ConfigError, match=message):
    validate(config, 8)


def test_quick_run_through_the_trainer(data_dir, tmp_path):
  config = load_config("recsys_mclrec", "quick")
  config.data.data_dir = data_dir
  config.num_steps = 4
  config.evals.validation.every = config.evals.test.every = 4
  summary = train.run(config, str(tmp_path / "run"))
  assert summary["complete"] and summary["final_step"] == 4
  for split in ("validation", "test"):
    m = summary["evals"][split]
    assert 0 <= m["ndcg@5"] <= m["hr@5"] <= m["hr@10"] <= m["hr@20"] <= 1
    assert m["mrr@10"] <= m["ndcg@10"] <= m["hr@10"]
  assert np.isfinite(summary["train"]["loss"])
