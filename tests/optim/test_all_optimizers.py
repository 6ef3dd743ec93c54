"""Every optimizer of big_batch.optim.OPTIMIZERS: convergence, jit, MultiSteps,
inject_hyperparams, sharding over 8 devices, and `build` from a config."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from big_batch import checks, optim
from big_batch.optim import masks, schedules

# (name, keyword arguments, learning rate of the convergence test: optax's alias_test values)
CASES = [
    ("sgd", {}, 1e-3),
    ("adamw", {}, 1e-1),
    ("lamb", {}, 1e-3),
    ("lars", {}, 1.0),
    ("lars", {"ratio": "mlperf"}, 1.0),
    ("novograd", {}, 1e-3),
]
IDS = [name + "".join(f"-{v}" for v in kwargs.values()) for name, kwargs, _ in CASES]


def _params():
  rng = np.random.default_rng(0)
  return {"kernel": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
          "bias": jnp.asarray(rng.normal(size=(8,)), jnp.float32)}


def _grads(steps):
  rng = np.random.default_rng(1)
  return [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), _params())
          for _ in range(steps)]


def _max_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _assert_close_updates(got, expected):
  """Equal updates up to float32 rounding, and not all zero."""
  scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(expected))
  assert scale > 0
  assert _max_diff(got, expected) <= 1e-5 * scale


def _parabola():
  target = jnp.array([1.0, -1.0, 1.0])
  return jnp.array([-1.0, 10.0, 1.0]), target, lambda x: jnp.sum((x - target) ** 2)


def _rosenbrock():
  return (jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0]),
          lambda x: (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2)


@pytest.mark.parametrize("problem", [_parabola, _rosenbrock])
@pytest.mark.parametrize("name, kwargs, learning_rate", CASES, ids=IDS)
def test_minimizes_parabola_and_rosenbrock_without_retracing(name, kwargs, learning_rate, problem):
  """10,000 steps reach the minimum within 3e-2 (optax alias_test); the second 5,000-step call
  reuses the first trace, so the state after `update` has the types of the state after `init`."""
  start, minimum, loss = problem()
  tx = optim.OPTIMIZERS[name](learning_rate=learning_rate, **kwargs)
  traces = []

  @jax.jit
  def run(params, state):
    traces.append(1)

    def step(_, carry):
      params, state = carry
      update, state = tx.update(jax.grad(loss)(params), state, params)
      return optax.apply_updates(params, update), state

    return jax.lax.fori_loop(0, 5000, step, (params, state))

  params, state = run(start, tx.init(start))
  params, state = run(params, state)
  assert len(traces) == 1
  np.testing.assert_allclose(params, minimum, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("name, kwargs, _", CASES, ids=IDS)
def test_multisteps_of_two_equals_one_step_on_the_mean_gradient(name, kwargs, _):
  tx = optim.OPTIMIZERS[name](learning_rate=0.1, **kwargs)
  accumulated = optax.MultiSteps(tx, every_k_schedule=2)
  params, (g1, g2) = _params(), _grads(2)

  @jax.jit
  def both(params):
    first, state = accumulated.update(g1, accumulated.init(params), params)
    second, _ = accumulated.update(g2, state, optax.apply_updates(params, first))
    mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
    expected, _ = tx.update(mean, tx.init(params), params)
    return first, second, expected

  first, second, expected = both(params)
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(first))
  _assert_close_updates(second, expected)


@pytest.mark.parametrize("name, kwargs, _", CASES, ids=IDS)
def test_inject_hyperparams_learning_rate_equals_a_fresh_optimizer(name, kwargs, _):
  static = ("momentum",) if name == "sgd" else ()  # baselines.sgd branches on `momentum or None`
  injected = optax.inject_hyperparams(optim.OPTIMIZERS[name], static_args=static)(
      learning_rate=0.1, **kwargs)
  fresh = optim.OPTIMIZERS[name](learning_rate=0.03, **kwargs)
  params, grads = _params(), _grads(3)

  @jax.jit
  def both(params):
    state = injected.init(params)
    state.hyperparams["learning_rate"] = jnp.asarray(0.03)
    fresh_state, updates = fresh.init(params), []
    for grad in grads:
      update, state = injected.update(grad, state, params)
      fresh_update, fresh_state = fresh.update(grad, fresh_state, params)
      updates.append((update, fresh_update))
      params = optax.apply_updates(params, update)
    return updates

  for update, fresh_update in both(params):
    _assert_close_updates(update, fresh_update)


def _state_shardings(tx, params, replicated):
  """Each state leaf shaped like its parameter takes the parameter's sharding; others replicate."""
  return optax.tree.map_params(
      tx, lambda leaf, param: param.sharding if leaf.shape == param.shape else replicated,
      jax.eval_shape(tx.init, params), params, transform_non_params=lambda _: replicated)


@pytest.mark.parametrize("name, kwargs, _", CASES, ids=IDS)
def test_state_keeps_the_sharding_of_its_parameters(name, kwargs, _):
  """Updates keep each state leaf on its parameter's sharding and equal the one-device run.

  With Auto axes a bare jit(init) puts zero-initialized state on one device, not on the
  params' sharding (no output depends on the params' values), so init gets out_shardings,
  as the trainer gives it.
  """
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
  replicated = NamedSharding(mesh, P())
  specs = {"kernel": P("fsdp", None), "bias": P("fsdp")}
  params = {k: jax.device_put(p, NamedSharding(mesh, specs[k])) for k, p in _params().items()}
  tx = optim.OPTIMIZERS[name](learning_rate=0.1, **kwargs)
  expected = _state_shardings(tx, params, replicated)

  @jax.jit
  def step(params, state, grad):
    update, state = tx.update(grad, state, params)
    return optax.apply_updates(params, update), state

  state = jax.jit(tx.init, out_shardings=expected)(params)
  sharded = params
  for grad in _grads(2):
    grad = jax.device_put(grad, jax.tree.map(lambda p: p.sharding, params))
    sharded, state = step(sharded, state, grad)
    for leaf, sharding in zip(jax.tree.leaves(state), jax.tree.leaves(expected), strict=True):
      assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim), (leaf.shape, leaf.sharding)
  assert any(s.spec != P() for s in jax.tree.leaves(expected))  # the state is really sharded
  single, single_state = _params(), tx.init(_params())
  for grad in _grads(2):
    single, single_state = step(single, single_state, grad)
  assert _max_diff(sharded, single) < 1e-6  # norms of sharded leaves are global norms


@pytest.mark.parametrize("name, fields, direct", [
    ("lamb", dict(weight_decay=0.01, weight_decay_mask="exclude_bias_and_norm",
                  trust_ratio_mask="exclude_bias_and_norm", max_grad_norm=1.0),
     lambda lr: optim.OPTIMIZERS["lamb"](lr, weight_decay=0.01, max_grad_norm=1.0,
                                         weight_decay_mask=masks.exclude_bias_and_norm,
                                         trust_ratio_mask=masks.exclude_bias_and_norm)),
    ("lars", dict(weight_decay=1e-4, ratio="mlperf", nesterov=True,
                  weight_decay_mask="exclude_bias_and_norm",
                  trust_ratio_mask="exclude_bias_and_norm"),
     lambda lr: optim.OPTIMIZERS["lars"](lr, weight_decay=1e-4, ratio="mlperf", nesterov=True,
                                         weight_decay_mask=masks.exclude_bias_and_norm,
                                         trust_ratio_mask=masks.exclude_bias_and_norm)),
    ("novograd", dict(weight_decay=1e-3, grad_averaging=True,
                      weight_decay_mask="exclude_bias_and_norm"),
     lambda lr: optim.OPTIMIZERS["novograd"](lr, weight_decay=1e-3, grad_averaging=True,
                                             weight_decay_mask=masks.exclude_bias_and_norm)),
])
def test_build_from_config(name, fields, direct):
  config = ml_collections.ConfigDict(dict(name=name, learning_rate=0.5, schedule="cosine",
                                          warmup_steps=2, **fields))
  built = optim.build(config, total_steps=6).tx
  expected = direct(schedules.warmup_then("cosine", 0.5, total_steps=6, warmup_steps=2))
  params, grads = _params(), _grads(4)

  @jax.jit
  def both(params):
    state, expected_state, expected_params = built.init(params), expected.init(params), params
    for grad in grads:
      update, state = built.update(grad, state, params)
      params = optax.apply_updates(params, update)
      update, expected_state = expected.update(grad, expected_state, expected_params)
      expected_params = optax.apply_updates(expected_params, update)
    return params, expected_params

  got, want = both(params)
  assert _max_diff(got, want) == 0.0
  assert _max_diff(got, params) > 1e-4


@pytest.mark.parametrize("name", ["lamb", "lars", "novograd"])
def test_build_rejects_an_unknown_field(name):
  config = ml_collections.ConfigDict(dict(name=name, learning_rate=0.1, trust_coefficent=1e-3))
  with pytest.raises(TypeError, match="trust_coefficent"):
    optim.build(config, total_steps=10)
  with pytest.raises(ValueError, match=r"config.optimizer.trust_coefficent: not a field here "
                                       rf"\(optimizer '{name}' takes \["):
    optim.check(checks.Checker(ml_collections.ConfigDict({"optimizer": config})).section(
        "optimizer"))
