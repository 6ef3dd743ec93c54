"""tasks/pipelined.py: the per-stage delays, the forward/backward weight inconsistency, the
synchronous case against a plain optax loop, the forward weights of D_s updates ago (and
LWP's prediction) against a recorded weight history, config errors, the shipped config."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from big_batch import checks, train
from big_batch.data.datasets import Dataset
from big_batch.tasks import pipelined
from big_batch.tasks.supervised import cross_entropy_and_accuracy
from big_batch.train.validate import validate
from conftest import load_config

LENGTH, CLASSES, ROWS, STEPS = 40, 10, 2, 6
STAGES = 3  # Two conv stages and the head.
DATA = Dataset(splits={}, num_classes=CLASSES, input_shape=(LENGTH,))


def task_config(stage_delay=1, sc=False, lwp=False, weights="pipelined"):
  config = load_config("mnist1d_pipelined", "quick")
  config.model.channels = (8, 8)
  config.optimizer.learning_rate = 0.05
  config.optimizer.momentum = 0.9
  config.pipelined = dict(stage_delay=stage_delay, weights=weights, spike_compensation=sc,
                          weight_prediction=lwp)
  config.evals = {}
  return config


def batches(steps):
  rng = np.random.default_rng(0)
  return [{"input": jnp.asarray(rng.normal(size=(ROWS, LENGTH)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, CLASSES, ROWS), jnp.int32)}
          for _ in range(steps)]


@functools.cache
def run_task(steps, **pipeline):
  """(states before each step, per-step losses) of the task's own train step."""
  config = task_config(**pipeline)
  task = pipelined.build(config, DATA, None, steps)
  state = task.init(jax.random.key(0))
  step = jax.jit(task.train_step)
  states, losses = [], []
  for batch in batches(steps):
    states.append(state)
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  return states + [state], losses


def plain_loss(config):
  """The jitted loss (and gradient) of the whole model merged from `params`: no pipeline,
  no inconsistency."""
  model = pipelined.StagedCNN((LENGTH,), CLASSES, channels=config.model.channels,
                              groups=config.model.groups, rngs=nnx.Rngs(0))
  graphdef, _ = nnx.split(model, nnx.Param)

  def loss(params, batch):
    logits = nnx.merge(graphdef, params)(batch["input"])
    return cross_entropy_and_accuracy(logits, batch["label"])[0].mean()

  return jax.jit(jax.value_and_grad(loss))


def test_stage_delays_follow_the_depth():
  assert pipelined.stage_delays(5) == [8, 6, 4, 2, 0]
  assert pipelined.stage_delays(4, 1) == [3, 2, 1, 0]
  assert pipelined.stage_delays(3, 0) == [0, 0, 0]


def test_inconsistent_has_forward_value_and_backward_gradient():
  apply = lambda w, x: jnp.tanh(w * x)
  w_fwd, w_bwd, x = jnp.array([0.3, -1.2]), jnp.array([0.7, 0.4]), jnp.array([1.5, 2.0])
  np.testing.assert_allclose(pipelined.inconsistent(apply, w_fwd, w_bwd, x), apply(w_fwd, x),
                             rtol=1e-6)
  loss = lambda w, x: jnp.sum(pipelined.inconsistent(apply, w_fwd, w, x) ** 2)
  got = jax.grad(loss, argnums=(0, 1))(w_bwd, x)
  # Cotangent 2 * forward value, pulled back through the backward weights' Jacobian.
  _, vjp = jax.vjp(apply, w_bwd, x)
  expected = vjp(2 * apply(w_fwd, x))
  for a, b in zip(got, expected):
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_without_delay_the_task_is_optax_momentum_sgd():
  config = task_config(stage_delay=0, sc=True, lwp=True)  # D = 0: SC and LWP do nothing.
  states, losses = run_task(STEPS, stage_delay=0, sc=True, lwp=True)
  params = states[0]["params"]
  tx = optax.sgd(0.05, momentum=0.9)
  opt_state, loss_and_grad = tx.init(params), plain_loss(config)
  update = jax.jit(tx.update)
  for t, batch in enumerate(batches(STEPS)):
    loss, grads = loss_and_grad(params, batch)
    assert float(loss) == pytest.approx(losses[t], rel=1e-5)
    updates, opt_state = update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  for a, b in zip(jax.tree.leaves(states[-1]["params"]), jax.tree.leaves(params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lwp", [False, True])  # With LWP also SC, which must not matter.
def test_each_stage_runs_forward_on_its_weights_of_d_updates_ago(lwp):
  """Loss at step t = the plain model's with stage s at w_{t - D_s} (w_0 while the pipeline
  fills), or with LWP at w_{t-D} + D (w_{t-D} - w_{t-D-1})."""
  config = task_config(stage_delay=1, sc=lwp, lwp=lwp)
  steps = STEPS
  states, losses = run_task(steps, stage_delay=1, sc=lwp, lwp=lwp)
  history = [s["params"] for s in states]
  delays = pipelined.stage_delays(STAGES, 1)

  def forward_weights(s, t):
    k = t - delays[s]
    if k < 0:
      return history[0]["stages"][s]
    if not lwp or delays[s] == 0:
      return history[k]["stages"][s]
    previous = history[k - 1]["stages"][s] if k >= 1 else history[0]["stages"][s]
    return jax.tree.map(lambda w, p: w + delays[s] * (w - p), history[k]["stages"][s], previous)

  loss_and_grad = plain_loss(config)
  for t, batch in enumerate(batches(steps)):
    params = {"stages": {s: forward_weights(s, t) for s in range(STAGES)}}
    assert float(loss_and_grad(params, batch)[0]) == pytest.approx(losses[t], rel=1e-4)
  # The delays change the run: not the synchronous one.
  _, synchronous = run_task(STEPS, stage_delay=0, sc=True, lwp=True)
  assert abs(synchronous[-1] - losses[-1]) > 1e-4


def test_the_gradient_is_the_backward_pass_on_current_weights_through_old_activations():
  """g_t recovered from the momentum buffer (v_{t+1} - m v_t) against a stage-by-stage
  backward pass written out with jax.vjp: activations from the forward weights of D_s
  updates ago, each stage's Jacobians at its current weights."""
  config = task_config(stage_delay=1)
  states, _ = run_task(STEPS, stage_delay=1, sc=False, lwp=False)
  delays = pipelined.stage_delays(STAGES, 1)
  model = pipelined.StagedCNN((LENGTH,), CLASSES, channels=config.model.channels,
                              groups=config.model.groups, rngs=nnx.Rngs(0))
  graphdefs = [nnx.split(stage, nnx.Param)[0] for stage in model.stages]
  velocity = lambda state: state["opt_state"][0][1].velocity  # spike_compensation's buffer
  t = STEPS - 1
  batch = batches(STEPS)[t]
  current = states[t]["params"]["stages"]
  old = [states[max(t - d, 0)]["params"]["stages"][s] for s, d in enumerate(delays)]

  @jax.jit
  def backward_pass(current, old, batch):
    x, pullbacks = batch["input"][..., None], []
    for s in range(STAGES):
      apply = lambda w, x, s=s: nnx.merge(graphdefs[s], w)(x)
      pullbacks.append(jax.vjp(apply, current[s], x)[1])
      x = apply(old[s], x)
    cotangent = jax.grad(lambda logits: cross_entropy_and_accuracy(logits, batch["label"])[0]
                         .mean())(x)
    expected = {}
    for s in reversed(range(STAGES)):
      expected[s], cotangent = pullbacks[s](cotangent)
    return expected

  expected = backward_pass(current, old, batch)
  got = jax.tree.map(lambda new, prev: new - 0.9 * prev, velocity(states[t + 1]),
                     velocity(states[t]))["stages"]
  for s in range(STAGES):
    for a, b in zip(jax.tree.leaves(got[s]), jax.tree.leaves(expected[s])):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_stale_weights_equal_delayed_gradients_of_the_plain_model():
  """weights='stale': stage s's update at step t uses the gradient at w_{t - D_s}."""
  config = task_config(stage_delay=1, weights="stale")
  states, _ = run_task(STEPS, stage_delay=1, weights="stale")
  delays = pipelined.stage_delays(STAGES, 1)
  params = states[0]["params"]
  velocity = jax.tree.map(jnp.zeros_like, params)
  grads_at, loss_and_grad = [], plain_loss(config)
  for t, batch in enumerate(batches(STEPS)):
    grads_at.append(loss_and_grad(params, batch)[1])
    stale = {"stages": {s: (grads_at[t - delays[s]]["stages"][s] if t >= delays[s] else
                            jax.tree.map(jnp.zeros_like, params["stages"][s]))
                        for s in range(STAGES)}}
    velocity = jax.tree.map(lambda v, g: 0.9 * v + g, velocity, stale)
    params = jax.tree.map(lambda w, v: w - 0.05 * v, params, velocity)
  for a, b in zip(jax.tree.leaves(states[-1]["params"]), jax.tree.leaves(params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("field, value, message", [
    ("optimizer.name", "adamw", "momentum SGD"),
    ("optimizer.nesterov", True, "heavy-ball"),
    ("model.groups", 3, "divide every channel width"),
    ("pipelined.stage_delay", -1, "non-negative integer"),
    ("pipelined.weights", "exact", "is not one of"),
])
def test_bad_fields_are_named(field, value, message):
  config = load_config("mnist1d_pipelined", "quick")
  section, key = field.rsplit(".", 1)
  with config.unlocked():
    config[section][key] = value
  with pytest.raises(checks.ConfigError, match=message):
    validate(config, 1)


@pytest.mark.slow
def test_the_shipped_config_runs_batch_1_quick(tmp_path, data_dir):
  config = load_config("mnist1d_pipelined", "quick")
  config.data.data_dir = data_dir
  config.batch.size = 1
  summary = train.run(config, str(tmp_path))
  assert summary["complete"] and summary["final_step"] == 60
  assert np.isfinite(summary["train"]["loss"])
  assert 0.0 <= summary["evals"]["test"]["accuracy"] <= 1.0
