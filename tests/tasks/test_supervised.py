"""The classification task: loss and metrics against a plain computation, pure-state steps."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from big_batch.data.datasets import Dataset, Split
from big_batch.tasks import supervised


def tiny_task(norm="batch", tx=None):
  config = ml_collections.ConfigDict({
      "model": {"name": "mlp", "hidden": (16,), "norm": norm},
      "batch": {"accumulation_steps": 1},
  })
  data = Dataset(train=Split(0, None), test=Split(0, None), num_classes=3, input_shape=(5,))
  tx = tx or optax.sgd(0.1)
  return supervised.build(config, data, tx, optax.constant_schedule(0.1))


def batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return {"input": jnp.asarray(rng.normal(size=(n, 5)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, 3, n), jnp.int32),
          "mask": jnp.ones((n,), jnp.float32)}


def test_cross_entropy_and_accuracy_against_numpy():
  logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
  labels = np.array([0, 1])
  loss, correct = supervised.cross_entropy_and_accuracy(jnp.asarray(logits), jnp.asarray(labels),
                                                        jnp.array([1.0, 0.0]))
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(loss, [-log_softmax[0, 0], 0.0], rtol=1e-6)
  np.testing.assert_array_equal(correct, [1.0, 0.0])


def test_train_step_is_sgd_on_the_mean_loss_and_updates_batch_stats():
  task = tiny_task()
  state = task.init(jax.random.key(0))
  b = batch()

  def loss_of(params):
    new_state, metrics = task.train_step({**state, "params": params}, b)
    return metrics["loss"]

  grads = jax.grad(loss_of)(state["params"])
  new_state, metrics = jax.jit(task.train_step)(state, b)
  expected = jax.tree.map(lambda p, g: p - 0.1 * g, state["params"], grads)
  jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6),
               new_state["params"], expected)
  assert int(new_state["step"]) == 1
  assert not np.allclose(new_state["model_state"]["norms"][0]["mean"],
                         state["model_state"]["norms"][0]["mean"])
  np.testing.assert_allclose(metrics["grad_norm"], optax.global_norm(grads), rtol=1e-5)
  np.testing.assert_allclose(metrics["learning_rate"], 0.1)


def test_eval_step_sums_only_unmasked_examples():
  task = tiny_task(norm="none")
  state = task.init(jax.random.key(0))
  b = batch(8)
  full = task.eval_step(state, b)
  half = task.eval_step(state, {**b, "mask": jnp.array([1.0] * 4 + [0.0] * 4)})
  first = task.eval_step(state, {k: v[:4] for k, v in b.items()})
  assert float(full["count"]) == 8 and float(half["count"]) == 4
  np.testing.assert_allclose(half["loss"], first["loss"], rtol=1e-5)
  np.testing.assert_allclose(half["accuracy"], first["accuracy"])
