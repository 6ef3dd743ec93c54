"""Shared cases of the optimizer tests: a mixed-shape pytree, per-step gradients, a jitted run."""
import jax
import jax.numpy as jnp
import numpy as np
import optax


def mixed_params():
  """Mixed shapes: conv and dense kernels, a bias, a scalar and a zero-initialized kernel."""
  rng = np.random.default_rng(0)
  return {
      "conv_kernel": jnp.asarray(rng.normal(size=(3, 3, 4, 8)), jnp.float32),
      "dense_kernel": jnp.asarray(rng.normal(size=(8, 5)), jnp.float32),
      "dense_bias": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
      "scale": jnp.asarray(1.5, jnp.float32),
      "zero_kernel": jnp.zeros((6, 5), jnp.float32),
  }


def per_step_grads(params, steps):
  """A gradient per step, each leaf on its own scale (1e-2 .. 1e2)."""
  rng = np.random.default_rng(1)
  scales = {k: 10.0 ** (i - 2) for i, k in enumerate(sorted(params))}
  return [{k: jnp.asarray(scales[k] * rng.normal(size=p.shape), jnp.float32)
           for k, p in params.items()} for _ in range(steps)]


def run_jitted(tx, params, grads):
  """(params before, update) at each jitted step of `tx`, and the final state."""

  @jax.jit
  def step(params, state, grad):
    update, state = tx.update(grad, state, params)
    return optax.apply_updates(params, update), update, state

  state, history = tx.init(params), []
  for grad in grads:
    new_params, update, state = step(params, state, grad)
    history.append((params, update))
    params = new_params
  return history, state


def max_abs_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def norm64(x):
  return np.sqrt(np.sum(np.square(np.asarray(x, np.float64))))  # flattened (Frobenius) norm


def assert_matches_reference(history, expected):
  """Each step of a `run_jitted` history lands on the reference's params (float64 numpy)."""
  for (before, update), want in zip(history, expected, strict=True):
    got = optax.apply_updates(before, update)
    for k in want:
      np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=1e-6, err_msg=k)
