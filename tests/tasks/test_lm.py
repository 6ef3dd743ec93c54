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
from big_batch.data.datasets import Dataset, Split
from big_batch.parallel import mesh as mesh_lib
from big_batch.tasks import lm

BATCH, SEQ, LR = 4, 16, 0.1


def lm_config(accumulation_steps=1):
  return ml_collections.ConfigDict({
      "seed": 0,
      "model": {"name": "linear_attention_lm", "dim": 16, "depth": 1, "heads": 2,
                "sequence_parallel": "dense"},
      "optimizer": {"name": "sgd", "learning_rate": LR, "momentum": 0.0},
      "batch": {"size": BATCH, "accumulation_steps": accumulation_steps},
      "evals": {"validation": {"every": 1, "batch_size": 4}},
  })


def split_of(arrays):
  return Split(len(arrays["inputs"]), lambda idx: {k: np.asarray(v)[idx]
                                                   for k, v in arrays.items()})


def tiny_task(accumulation_steps=1, validation=None):
  """The task; its 'validation' evaluator reads `validation` (a dict of arrays)."""
  data = Dataset(splits={"validation": split_of(validation or batch())}, num_classes=None,
                 input_shape=None)
  mesh = mesh_lib.create(dict(data=1), devices=jax.devices()[:1])
  return lm.build(lm_config(accumulation_steps), data, mesh, total_steps=10)


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
  task = task._replace(train_step=jax.jit(task.train_step))
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


def test_evaluation_averages_the_tokens_of_the_split_only(task_state_logits):
  """Over a split of 2 sequences in batches of 4: the 2 padded rows must not count."""
  _, state, logits = task_state_logits
  b = batch()
  loss, correct = numpy_next_token(logits, b["targets"])
  kept = np.array([0, 2])
  evaluator = tiny_task(validation={k: np.asarray(b[k])[kept] for k in ("inputs", "targets")}
                        ).evaluators["validation"]
  got = evaluator(state)
  np.testing.assert_allclose(got["loss"], loss[kept].mean(), rtol=1e-5)
  np.testing.assert_allclose(got["bits_per_byte"], loss[kept].mean() / math.log(2), rtol=1e-5)
  np.testing.assert_allclose(got["accuracy"], correct[kept].mean(), rtol=1e-6)
  full = tiny_task().evaluators["validation"](state)
  np.testing.assert_allclose(full["loss"], loss.mean(), rtol=1e-5)


def test_unknown_language_model_is_named():
  config = lm_config().model
  config.name = "gpt9"
  with pytest.raises(ValueError, match="config.model.name='gpt9' is not one of"):
    models.build_language_model(config, nnx.Rngs(0))
