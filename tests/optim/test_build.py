"""optim.build: the baselines from a config equal optax's own, schedules and clipping included."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from big_batch import checks, optim


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
  ours = optim.build(config, total_steps=5).tx
  schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, 2, 5, 0.0)
  reference = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(schedule, weight_decay=0.01, mask=lambda p: {"w": True, "b": False}))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), run(ours),
               run(reference))


def test_sgd_momentum_equals_optax():
  config = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.05, momentum=0.9))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               run(optim.build(config, 5).tx), run(optax.sgd(0.05, momentum=0.9)))


def test_unknown_optimizer_and_unknown_mask():
  with pytest.raises(ValueError, match="config.optimizer.name='adam9'"):
    optim.build(ml_collections.ConfigDict(dict(name="adam9", learning_rate=0.1)), 5)
  with pytest.raises(ValueError, match="mask='biases_only' is not one of"):
    optim.build(ml_collections.ConfigDict(dict(name="adamw", learning_rate=0.1,
                                               weight_decay_mask="biases_only")), 5)


@pytest.mark.parametrize("rule, factor", [("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_batch_scaling_sets_the_peak_of_the_one_schedule_the_optimizer_follows(rule, factor):
  config = ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.1, momentum=0.0,
                                          schedule="cosine", warmup_steps=2))
  batch = ml_collections.ConfigDict(dict(size=512, base_size=128, lr_scaling=rule))
  built = optim.build(config, total_steps=10, batch=batch)
  np.testing.assert_allclose(built.learning_rate(2), 0.1 * factor, rtol=1e-6)
  # Plain SGD moves by exactly lr_t * g: the transformation follows the returned schedule.
  params, grads = {"w": jnp.ones(3)}, {"w": jnp.full(3, 2.0)}
  state = built.tx.init(params)
  for step in range(4):
    updates, state = built.tx.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], -2.0 * built.learning_rate(step), rtol=1e-6)
  assert float(built.learning_rate(1)) == pytest.approx(0.05 * factor)  # Warmup from 0.


def test_check_names_the_bad_optimizer_field():
  def check(**fields):
    config = ml_collections.ConfigDict({"optimizer": dict(name="adamw", learning_rate=0.1,
                                                          **fields)})
    optim.check(checks.Checker(config).section("optimizer"))

  check(weight_decay=0.1, weight_decay_mask="exclude_bias_and_norm", b1=0.8)
  with pytest.raises(ValueError, match=r"config.optimizer.weight_decay_mask='bias' is not one"):
    check(weight_decay_mask="bias")
  with pytest.raises(ValueError, match=r"config.optimizer.warmup_steps=-1 must be a non-neg"):
    check(warmup_steps=-1)
  with pytest.raises(ValueError, match=r"config.optimizer.momentum: not a field here"):
    check(momentum=0.9)  # An SGD field on AdamW.


def test_a_task_with_several_optimizers_builds_and_checks_each_section():
  config = ml_collections.ConfigDict({"optimizers": {
      "actor": dict(name="adamw", learning_rate=3e-4),
      "critic": dict(name="sgd", learning_rate=-1.0)}})
  checker = checks.Checker(config)
  optim.check(checker.section("optimizers.actor"))
  with pytest.raises(ValueError, match=r"config.optimizers.critic.learning_rate=-1.0 must be"):
    optim.check(checker.section("optimizers.critic"))
  actor = optim.build(config.optimizers.actor, 10, name="optimizers.actor")
  assert float(actor.learning_rate(5)) == pytest.approx(3e-4)
  config.optimizers.actor.warmup_steps = 20
  with pytest.raises(ValueError, match=r"config.optimizers.actor.warmup_steps=20 is longer than "
                                       r"the run's 10 steps"):
    optim.build(config.optimizers.actor, 10, name="optimizers.actor")
