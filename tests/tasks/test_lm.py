"""The causal-LM task: next-token loss and metrics against numpy, masked eval, pure-state steps."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from big_batch import models
from big_batch.tasks import lm

BATCH, SEQ, LR = 4, 16, 0.1


def lm_config(accumulation_steps=1):
  return ml_collections.ConfigDict({
      "model": {"name": "linear_attention_lm", "dim": 16, "depth": 1, "heads": 2,
                "sequence_parallel": "dense"},
      "batch": {"accumulation_steps": accumulation_steps},
  })


def tiny_task(accumulation_steps=1):
  return lm.build(lm_config(accumulation_steps), None, optax.sgd(LR), optax.constant_schedule(LR))


def batch(n=BATCH, seed=0):
  stream = np.random.default_rng(seed).integers(0, 256, (n, SEQ + 1))
  return {"inputs": jnp.asarray(stream[:, :-1], jnp.int32),
          "targets": jnp.asarray(stream[:, 1:], jnp.int32),
          "mask": jnp.ones((n,), jnp.float32)}


def numpy_next_token(logits, targets):
  """Per-token −ln softmax(logits)[target] and argmax hits, in float64 numpy."""
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  targets = np.asarray(targets)
  loss = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  return loss, (logits.argmax(-1) == targets).astype(np.float64)


@pytest.fixture(scope="module")
def task_state_logits():
  """The task with jitted steps, its initial state, and the same model's logits on `batch()`."""
  task = tiny_task()
  key = jax.random.key(0)
  state = jax.jit(task.init)(key)
  graphdef, params = nnx.split(models.build_language_model(lm_config().model, nnx.Rngs(key)))
  jax.tree.map(np.testing.assert_array_equal, params.to_pure_dict(), state["params"])
  logits = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))(params, batch()["inputs"])
  task = task._replace(train_step=jax.jit(task.train_step), eval_step=jax.jit(task.eval_step))
  return task, state, logits


def test_train_metrics_equal_numpy_next_token_cross_entropy(task_state_logits):
  task, state, logits = task_state_logits
  b = batch()
  loss, correct = numpy_next_token(logits, b["targets"])
  _, metrics = task.train_step(state, b)
  np.testing.assert_allclose(metrics["loss"], loss.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["bits_per_byte"], loss.mean() / math.log(2), rtol=1e-5)
  np.testing.assert_allclose(metrics["bits_per_byte"], metrics["loss"] / math.log(2), rtol=1e-6)
  np.testing.assert_allclose(metrics["accuracy"], correct.mean(), rtol=1e-6)
  assert loss.mean() > 4  # An untrained byte model is near ln 256 = 5.5 nats, not at 0.


def test_train_step_is_sgd_on_the_mean_token_loss(task_state_logits):
  task, state, _ = task_state_logits
  b = batch()
  graphdef = nnx.split(models.build_language_model(lm_config().model, nnx.Rngs(0)))[0]

  def reference_loss(params):
    logits = nnx.merge(graphdef, params, state["model_state"])(b["inputs"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, b["targets"]).mean()

  grads = jax.jit(jax.grad(reference_loss))(state["params"])
  new_state, metrics = task.train_step(state, b)
  expected = jax.tree.map(lambda p, g: p - LR * g, state["params"], grads)
  jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-6),
               new_state["params"], expected)
  np.testing.assert_allclose(metrics["grad_norm"], optax.global_norm(grads), rtol=1e-4)
  assert int(new_state["step"]) == 1


def test_accumulated_step_equals_the_whole_batch_step(task_state_logits):
  task, state, _ = task_state_logits
  b = batch()
  whole, whole_metrics = task.train_step(state, b)
  halves, halves_metrics = jax.jit(tiny_task(2).train_step)(state, b)
  jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-6),
               halves["params"], whole["params"])
  np.testing.assert_allclose(halves_metrics["loss"], whole_metrics["loss"], rtol=1e-5)


def test_eval_sums_tokens_of_unmasked_examples_only(task_state_logits):
  task, state, logits = task_state_logits
  b = batch()
  loss, correct = numpy_next_token(logits, b["targets"])
  mask = jnp.array([1.0, 0.0, 1.0, 0.0])
  sums = task.eval_step(state, {**b, "mask": mask})
  kept = np.array([0, 2])
  assert float(sums["count"]) == 2 * SEQ
  np.testing.assert_allclose(sums["loss"], loss[kept].sum(), rtol=1e-5)
  np.testing.assert_allclose(sums["bits_per_byte"], loss[kept].sum() / math.log(2), rtol=1e-5)
  np.testing.assert_allclose(sums["accuracy"], correct[kept].sum(), rtol=1e-6)
  full = task.eval_step(state, b)
  np.testing.assert_allclose(full["loss"] / full["count"], loss.mean(), rtol=1e-5)


def test_unknown_language_model_is_named():
  config = lm_config().model
  config.name = "gpt9"
  with pytest.raises(ValueError, match="config.model.name='gpt9' is not one of"):
    models.build_language_model(config, nnx.Rngs(0))
