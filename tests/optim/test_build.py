"""optim.build: the baselines from a config equal optax's own, schedules and clipping included."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from big_batch import optim


def run(tx, steps=5):
  params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
  state = tx.init(params)
  for i in range(steps):
    grads = jax.tree.map(lambda p: jnp.sin(p * (i + 1)) * 10, params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_adamw_with_warmup_cosine_and_clipping_equals_optax():
  config = ml_collections.ConfigDict(dict(name="adamw", learning_rate=0.1, schedule="cosine",
                                          warmup_steps=2, end_value=0.0, weight_decay=0.01,
                                          weight_decay_mask="exclude_bias_and_norm",
                                          grad_clip_norm=1.0))
  ours = optim.build(config, total_steps=5)
  schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, 2, 5, 0.0)
  reference = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(schedule, weight_decay=0.01, mask=lambda p: {"w": True, "b": False}))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), run(ours),
               run(reference))


def test_sgd_momentum_equals_optax():
  config = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.05, momentum=0.9))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               run(optim.build(config, 5)), run(optax.sgd(0.05, momentum=0.9)))


def test_unknown_optimizer_and_unknown_mask():
  with pytest.raises(ValueError, match="config.optimizer.name='adam9'"):
    optim.build(ml_collections.ConfigDict(dict(name="adam9", learning_rate=0.1)), 5)
  with pytest.raises(ValueError, match="mask='biases_only' is not one of"):
    optim.build(ml_collections.ConfigDict(dict(name="adamw", learning_rate=0.1,
                                               weight_decay_mask="biases_only")), 5)
