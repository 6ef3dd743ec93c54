"""AdaGrad-Norm and filter-wise AdaGrad-Norm against plain numpy loops of their update rules;
AdaGrad from optax through `optim.build`; a scalar state; sharded equals one device."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from big_batch import checks, optim
from optimizer_cases import (assert_matches_reference, max_abs_diff, mixed_params,
                             per_step_grads, run_jitted)

STEPS = 6


def adagrad_norm_numpy(params, grads, lr, b0, eps):
  """Ward et al. 2019, Alg. 1 in float64: b^2 += ||g||^2 (all leaves); x -= lr g / (b + eps)."""
  x = {k: np.asarray(v, np.float64) for k, v in params.items()}
  b_squared, out = b0**2, []
  for grad in grads:
    g = {k: np.asarray(v, np.float64) for k, v in grad.items()}
    b_squared += sum(np.sum(v**2) for v in g.values())
    x = {k: x[k] - lr * g[k] / (np.sqrt(b_squared) + eps) for k in x}
    out.append(x)
  return out


@pytest.mark.parametrize("b0, eps", [(0.1, 1e-10), (2.0, 0.5)])
def test_adagrad_norm_matches_a_numpy_loop(b0, eps):
  params = mixed_params()
  grads = per_step_grads(params, STEPS)
  history, _ = run_jitted(optim.adagrad_norm(0.3, b0=b0, eps=eps), params, grads)
  assert_matches_reference(history, adagrad_norm_numpy(params, grads, 0.3, b0, eps))


def test_adagrad_norm_keeps_one_float32_scalar():
  tx = optim.adagrad_norm(0.1)
  state = tx.init(mixed_params())
  leaves = jax.tree.leaves(state)
  assert [(leaf.shape, leaf.dtype) for leaf in leaves] == [((), jnp.float32)]
  np.testing.assert_allclose(leaves[0], 0.01)  # b_0^2


def layer_params():
  """Flax-shaped layers: a 1-D conv kernel [k, in, out] and a dense kernel [in, out], each
  with its bias, and a norm scale that no kernel shares."""
  rng = np.random.default_rng(2)
  shapes = {"conv": {"kernel": (3, 2, 4), "bias": (4,)},
            "dense": {"kernel": (4, 5), "bias": (5,)}, "norm": {"scale": (5,)}}
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), shapes,
                      is_leaf=lambda s: isinstance(s, tuple))


def filterwise_numpy(params, grads, lr, init, eps):
  """timlautk/AdAdaGrad `adagradnorm.py` step() with momentum, lr decay and weight decay 0,
  translated to flax layouts (output channel last instead of first): a kernel's sum per
  output channel grows by the channel's squared gradient norm; the bias that follows it in
  torch's parameter order grows by that same norm plus its own g^2; others by g^2."""
  paths = [("conv", "kernel"), ("conv", "bias"), ("dense", "kernel"), ("dense", "bias"),
           ("norm", "scale")]
  get = lambda tree, path: np.asarray(tree[path[0]][path[1]], np.float64)
  x = {p: get(params, p) for p in paths}
  sums = {p: np.full(x[p].shape[-1:] if x[p].ndim >= 2 else x[p].shape, init) for p in paths}
  out = []
  for grad in grads:
    previous_kernel = None
    for path in paths:
      g = get(grad, path)
      if g.ndim >= 2:
        channel = np.sum(g.reshape(-1, g.shape[-1]) ** 2, axis=0)
        sums[path] = sums[path] + channel
        previous_kernel = channel
        x[path] = x[path] - lr * g / (np.sqrt(sums[path]) + eps)
      else:
        coupled = path[1] == "bias" and previous_kernel is not None
        sums[path] = sums[path] + (previous_kernel if coupled else 0.0) + g**2
        x[path] = x[path] - lr * g / (np.sqrt(sums[path]) + eps)
    out.append({layer: {name: x[layer, name] for (l, name) in paths if l == layer}
                for layer, _ in paths})
  return out


def test_filterwise_adagrad_norm_matches_the_authors_update_rule():
  params = layer_params()
  rng = np.random.default_rng(3)
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
           for _ in range(STEPS)]
  history, state = run_jitted(optim.filterwise_adagrad_norm(0.2), params, grads)
  expected = filterwise_numpy(params, grads, 0.2, 1e-2, 1e-10)
  for (before, update), want in zip(history, expected, strict=True):
    got = optax.apply_updates(before, update)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), got, want)
  sums = jax.tree.leaves(state)
  assert sorted(s.shape for s in sums) == [(4,), (4,), (5,), (5,), (5,)]


def test_adagrad_comes_from_optax_through_build():
  config = ml_collections.ConfigDict(dict(name="adagrad", learning_rate=0.05,
                                          initial_accumulator_value=0.0, eps=1e-20))
  optim.check(checks.Checker(ml_collections.ConfigDict({"optimizer": config})).section(
      "optimizer"))
  params = mixed_params()
  grads = per_step_grads(params, STEPS)
  built, _ = run_jitted(optim.build(config, total_steps=STEPS).tx, params, grads)
  direct, _ = run_jitted(optax.adagrad(0.05, initial_accumulator_value=0.0, eps=1e-20), params,
                         grads)
  assert max_abs_diff([u for _, u in built], [u for _, u in direct]) == 0.0


@pytest.mark.parametrize("name", ["adagrad_norm", "filterwise_adagrad_norm"])
def test_build_takes_the_fields_of_the_signature_and_rejects_others(name):
  fields = dict(b0=0.5, eps=1e-8) if name == "adagrad_norm" else dict(
      initial_accumulator_value=0.5, eps=1e-8)
  config = ml_collections.ConfigDict(dict(name=name, learning_rate=0.1, **fields))
  params, grads = mixed_params(), per_step_grads(mixed_params(), 3)
  built, _ = run_jitted(optim.build(config, total_steps=3).tx, params, grads)
  direct, _ = run_jitted(optim.OPTIMIZERS[name](0.1, **fields), params, grads)
  assert max_abs_diff([u for _, u in built], [u for _, u in direct]) == 0.0
  config.b_0 = 0.1
  with pytest.raises(ValueError, match=rf"config.optimizer.b_0: not a field here \(optimizer "
                                       rf"'{name}' takes \["):
    optim.check(checks.Checker(ml_collections.ConfigDict({"optimizer": config})).section(
        "optimizer"))


@pytest.mark.parametrize("name", ["adagrad_norm", "filterwise_adagrad_norm"])
def test_minimizes_a_parabola(name):
  target = jnp.array([1.0, -1.0, 1.0])
  loss = lambda x: jnp.sum((x - target) ** 2)
  tx = optim.OPTIMIZERS[name](learning_rate=1.0)

  @jax.jit
  def run(params):
    def step(_, carry):
      params, state = carry
      update, state = tx.update(jax.grad(loss)(params), state, params)
      return optax.apply_updates(params, update), state
    return jax.lax.fori_loop(0, 2000, step, (params, tx.init(params)))[0]

  np.testing.assert_allclose(run(jnp.array([-1.0, 10.0, 1.0])), target, atol=3e-2)


@pytest.mark.parametrize("name", ["adagrad_norm", "filterwise_adagrad_norm"])
def test_sharded_over_8_devices_equals_one_device(name):
  """||g|| over leaves sharded on 8 devices is the global norm: the updates equal the
  unsharded ones."""
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
  params = {"dense": {"kernel": jnp.asarray(np.random.default_rng(4).normal(size=(16, 8)),
                                            jnp.float32),
                      "bias": jnp.linspace(-1.0, 1.0, 8, dtype=jnp.float32)}}
  specs = {"dense": {"kernel": P("fsdp", None), "bias": P("fsdp")}}
  sharded = jax.tree.map(lambda p, s: jax.device_put(p, NamedSharding(mesh, s)), params, specs)
  grads = [jax.tree.map(lambda p: p * (i + 1) - 0.5, params) for i in range(3)]
  tx = optim.OPTIMIZERS[name](learning_rate=0.1)
  single, _ = run_jitted(tx, params, grads)
  on_mesh, _ = run_jitted(tx, sharded, [jax.device_put(g, jax.tree.map(lambda p: p.sharding,
                                                                         sharded))
                                        for g in grads])
  assert on_mesh[-1][0]["dense"]["kernel"].sharding.is_equivalent_to(
      NamedSharding(mesh, P("fsdp", None)), 2)
  assert max_abs_diff([u for _, u in single], [u for _, u in on_mesh]) < 1e-6
