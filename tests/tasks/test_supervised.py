"""The classification task against a hand-written MLP: loss, gradient step, BN statistics,
weighted batches, and evaluation over a split with padding."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from big_batch.data.datasets import Dataset, Split
from big_batch.parallel import mesh as mesh_lib
from big_batch.tasks import supervised

LR, EPS, MOMENTUM = 0.1, 1e-5, 0.99


def batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return {"input": jnp.asarray(rng.normal(size=(n, 5)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 3, n), jnp.int32)}


def tiny_task(norm="batch", test=None):
  config = ml_collections.ConfigDict({
      "seed": 0,
      "model": {"name": "mlp", "hidden": (16,), "norm": norm},
      "optimizer": {"name": "sgd", "learning_rate": LR, "momentum": 0.0},
      "batch": {"size": 8, "accumulation_steps": 1},
      "evals": {"test": {"every": 1, "batch_size": 8}},
  })
  test = test or {k: np.asarray(v) for k, v in batch(5, seed=3).items()}
  split = Split(len(test["label"]), lambda idx: {k: v[idx] for k, v in test.items()})
  data = Dataset(splits={"test": split}, num_classes=3, input_shape=(5,))
  mesh = mesh_lib.create(dict(data=1), devices=jax.devices()[:1])
  return supervised.build(config, data, mesh, total_steps=10)


def mlp_by_hand(params, x, batch_norm: bool):
  """Dense -> BN (batch statistics, biased variance) -> ReLU -> Dense, written out in jnp."""
  h = x @ params["layers"][0]["kernel"] + params["layers"][0]["bias"]
  mean, var = h.mean(0), h.var(0)
  if batch_norm:
    norm = params["norms"][0]
    h = (h - mean) / jnp.sqrt(var + EPS) * norm["scale"] + norm["bias"]
  h = jnp.maximum(h, 0.0)
  return h @ params["head"]["kernel"] + params["head"]["bias"], (mean, var)


def cross_entropy_by_hand(logits, labels):
  log_p = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
  return -jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]


def test_cross_entropy_and_accuracy_against_numpy():
  logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
  labels = np.array([0, 1])
  loss, correct = supervised.cross_entropy_and_accuracy(jnp.asarray(logits), jnp.asarray(labels),
                                                        jnp.array([1.0, 0.0]))
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(loss, [-log_softmax[0, 0], 0.0], rtol=1e-6)
  np.testing.assert_array_equal(correct, [1.0, 0.0])


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_train_step_is_sgd_on_the_hand_written_loss_and_updates_batch_stats(norm):
  task = tiny_task(norm)
  state = task.init(jax.random.key(0))
  b = batch()

  def reference_loss(params):
    logits, stats = mlp_by_hand(params, b["input"], norm == "batch")
    return cross_entropy_by_hand(logits, b["label"]).mean(), stats

  (loss, (mean, var)), grads = jax.value_and_grad(reference_loss, has_aux=True)(state["params"])
  new_state, metrics = jax.jit(task.train_step)(state, b)
  expected = jax.tree.map(lambda p, g: p - LR * g, state["params"], grads)
  jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6),
               new_state["params"], expected)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
  np.testing.assert_allclose(metrics["grad_norm"], optax.global_norm(grads), rtol=1e-5)
  np.testing.assert_allclose(metrics["learning_rate"], LR)
  assert int(new_state["step"]) == 1
  if norm == "batch":  # running <- m running + (1 - m) batch statistic (flax convention).
    stats = new_state["model_state"]["norms"][0]
    np.testing.assert_allclose(stats["mean"], (1 - MOMENTUM) * mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats["var"], MOMENTUM * 1.0 + (1 - MOMENTUM) * var, rtol=1e-5)


def test_a_weighted_batch_trains_on_the_weighted_mean_loss():
  """Weights (3, 1, 0, ...) equal the unweighted step on rows (0, 0, 0, 1)."""
  task = tiny_task("none")
  state = task.init(jax.random.key(0))
  b = batch()
  weight = jnp.asarray([3.0, 1.0, 0, 0, 0, 0, 0, 0])
  weighted, metrics = jax.jit(task.train_step)(state, {**b, "weight": weight})
  repeated = {k: v[jnp.asarray([0, 0, 0, 1, 0, 0, 0, 1])] for k, v in b.items()}
  plain, plain_metrics = jax.jit(task.train_step)(state, repeated)
  jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-7),
               weighted["params"], plain["params"])
  np.testing.assert_allclose(metrics["loss"], plain_metrics["loss"], rtol=1e-6)


def test_evaluation_covers_the_split_once_in_eval_mode():
  """5 test examples in batches of 8: 3 padded rows must not count; BN uses running stats."""
  test = {k: np.asarray(v) for k, v in batch(5, seed=3).items()}
  task = tiny_task("batch", test=test)
  state = task.init(jax.random.key(0))
  state["model_state"]["norms"][0]["mean"] = jnp.full((16,), 0.3)
  got = task.evaluators["test"](state)
  params = state["params"]
  h = test["input"] @ params["layers"][0]["kernel"] + params["layers"][0]["bias"]
  h = (h - 0.3) / np.sqrt(1.0 + EPS) * params["norms"][0]["scale"] + params["norms"][0]["bias"]
  logits = np.maximum(h, 0) @ params["head"]["kernel"] + params["head"]["bias"]
  loss = cross_entropy_by_hand(jnp.asarray(logits), jnp.asarray(test["label"]))
  np.testing.assert_allclose(got["loss"], float(loss.mean()), rtol=1e-5)
  np.testing.assert_allclose(got["accuracy"], np.mean(logits.argmax(-1) == test["label"]))
