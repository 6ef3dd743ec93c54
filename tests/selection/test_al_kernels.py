"""Kernels of selection/kernels.py against direct computations (Monte Carlo, exact Jacobians)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.selection import kernel_transforms as kt
from big_batch.selection import kernels, regression_fit

X = np.array([[1.0, 0.5, -0.3], [-0.2, 1.1, 0.4], [0.7, -0.9, 0.2]])


def _ntk_param_net(key, width, depth, sigma_w, sigma_b):
  """f(x) = σ_w/√d W_L φ(...) + σ_b b_L with N(0, 1) weights and biases (NTK parametrisation)."""
  sizes = [3] + [width] * (depth - 1) + [1]
  keys = jax.random.split(key, 2 * depth)
  params = [(jax.random.normal(keys[2 * i], (a, b)), jax.random.normal(keys[2 * i + 1], (b,)))
            for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]

  def f(params, x):
    a = x
    for i, (w, b) in enumerate(params):
      a = sigma_w / np.sqrt(w.shape[0]) * a @ w + sigma_b * b
      if i < len(params) - 1:
        a = jax.nn.relu(a)
    return a[:, 0]
  return f, params


def test_nngp_matches_monte_carlo_over_wide_networks():
  depth, sw, sb = 3, 1.3, 0.2
  nngp, _ = kernels.relu_nngp_ntk(jnp.asarray(X), jnp.asarray(X), depth=depth, sigma_w=sw,
                                  sigma_b=sb)
  f, _ = _ntk_param_net(jax.random.key(0), 128, depth, sw, sb)
  outs = jax.vmap(lambda k: f(_ntk_param_net(k, 128, depth, sw, sb)[1], jnp.asarray(X)))(
      jax.random.split(jax.random.key(1), 1500))
  mc = np.asarray(outs.T @ outs / len(outs))
  np.testing.assert_allclose(mc, nngp, atol=0.08 * np.abs(nngp).max())


def test_ntk_matches_empirical_ntk_of_wide_networks():
  depth, sw, sb = 3, 1.0, 0.3
  _, ntk = kernels.relu_nngp_ntk(jnp.asarray(X), jnp.asarray(X), depth=depth, sigma_w=sw,
                                 sigma_b=sb)
  emp = []
  for seed in range(4):
    f, params = _ntk_param_net(jax.random.key(seed), 2048, depth, sw, sb)
    jac = jax.jacrev(f)(params, jnp.asarray(X))
    j = np.concatenate([np.asarray(l).reshape(len(X), -1) for l in jax.tree.leaves(jac)], 1)
    emp.append(j @ j.T)
  np.testing.assert_allclose(np.mean(emp, 0), ntk, rtol=0.05, atol=0.02)


def test_one_layer_kernels_are_the_closed_forms():
  nngp, ntk = kernels.relu_nngp_ntk(jnp.asarray(X), jnp.asarray(X), depth=1, sigma_w=2.0,
                                    sigma_b=0.5)
  np.testing.assert_allclose(nngp, 4.0 * X @ X.T / 3 + 0.25, rtol=1e-6)
  np.testing.assert_allclose(ntk, nngp, rtol=1e-6)


def _model():
  return regression_fit.make_model(jax.random.key(3), 3, 1, (16, 8))


def test_grad_gram_and_last_layer_equal_exact_jacobians():
  model = _model()
  exact = kernels.empirical_ntk(model, X, X)
  np.testing.assert_allclose(kernels.grad_gram(model, X), exact, rtol=1e-4, atol=1e-5)
  head = np.concatenate([np.asarray(jax.nn.relu(jax.nn.relu(X @ model.layers[0].kernel[...]
                                                            + model.layers[0].bias[...])
                                                @ model.layers[1].kernel[...]
                                                + model.layers[1].bias[...])),
                         np.ones((3, 1))], 1)
  np.testing.assert_allclose(kernels.last_layer_features(model, X), head, rtol=1e-5, atol=1e-6)


def test_sketched_grad_features_are_unbiased_for_the_gradient_kernel():
  model = _model()
  exact = kernels.grad_gram(model, X)
  grams = [kt.KernelMatrix.from_features(kernels.sketched_grad_features(
      model, X, 128, jax.random.key(s))).gram for s in range(100)]
  mean = np.mean(grams, 0)
  # Error of a mean over 100 sketches of p = 128: about |k| √(2/(100·128)) per entry.
  np.testing.assert_allclose(mean, exact, atol=0.06 * np.abs(exact).max())
  one = grams[0]
  assert np.abs(one - exact).max() > np.abs(mean - exact).max()


def test_batch_norm_mlp_is_refused():
  from flax import nnx
  from big_batch.models.mlp import MLP
  model = MLP((3,), 1, hidden=(4,), norm="batch", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="norm='none'"):
    kernels.grad_gram(model, X)
