"""Hessian and Gauss-Newton products, Lanczos and SLQ against explicit matrices (jax.hessian)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.sharding import NamedSharding, PartitionSpec as P

from big_batch.scaling import hessian


def _symmetric(eigenvalues, seed=0):
  n = len(eigenvalues)
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
  return (q * np.asarray(eigenvalues)) @ q.T


def _quadratic(matrix):
  """A loss 0.5 x^T A x over params {'a': x[:k], 'b': x[k:]} (two leaves, as a model has)."""
  k = matrix.shape[0] // 3
  a = jnp.asarray(matrix, jnp.float32)

  def loss(params, batch):
    del batch
    x = jnp.concatenate([params["a"], params["b"]])
    return 0.5 * x @ a @ x

  like = {"a": jnp.zeros(k), "b": jnp.zeros(matrix.shape[0] - k)}
  return loss, like


def test_lanczos_recovers_the_outliers_of_a_known_quadratic():
  rng = np.random.default_rng(1)
  spectrum = np.concatenate([[12.0, 7.0, 4.0, -3.0], rng.uniform(0, 1, 96)])
  loss, like = _quadratic(_symmetric(spectrum))
  values = hessian.top_eigenvalues(hessian.hessian_matvec(loss, like, None), like, order=40)
  np.testing.assert_allclose(values[:3], [12.0, 7.0, 4.0], rtol=1e-4)
  np.testing.assert_allclose(values[-1], -3.0, rtol=1e-4)


def test_full_lanczos_gives_every_eigenvalue_once():
  """With m = n steps and full reorthogonalization the Ritz values are the spectrum, with no
  spurious copies of converged eigenvalues (which plain Lanczos produces in float32)."""
  spectrum = np.array([-1.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.3, 2.1, 3.4, 5.5, 8.9, 14.4])
  loss, like = _quadratic(_symmetric(spectrum, seed=3))
  values = hessian.top_eigenvalues(hessian.hessian_matvec(loss, like, None), like, order=12)
  np.testing.assert_allclose(np.sort(values), spectrum, atol=2e-5)


def test_lanczos_stops_at_an_invariant_subspace():
  """Three distinct eigenvalues: the Krylov space closes after 3 steps and T is exact."""
  spectrum = np.repeat([1.0, 2.0, 5.0], 10)
  loss, like = _quadratic(_symmetric(spectrum, seed=4))
  matvec = hessian.hessian_matvec(loss, like, None)
  tridiagonal = hessian.lanczos(matvec, hessian.random_like(like, 0), order=20)
  assert len(tridiagonal.alphas) == 3
  np.testing.assert_allclose(tridiagonal.eigh()[0], [1.0, 2.0, 5.0], rtol=1e-5)


def _mlp():
  rng = np.random.default_rng(0)
  params = {"hidden": {"w": jnp.asarray(rng.normal(size=(5, 6)) / 2, jnp.float32),
                       "b": jnp.asarray(rng.normal(size=6) / 4, jnp.float32)},
            "head": {"w": jnp.asarray(rng.normal(size=(6, 3)) / 2, jnp.float32),
                     "b": jnp.zeros(3, jnp.float32)}}
  batch = {"x": jnp.asarray(rng.normal(size=(16, 5)), jnp.float32),
           "y": jnp.asarray(rng.integers(0, 3, 16), jnp.int32)}

  def logits(p, batch):
    h = jnp.tanh(batch["x"] @ p["hidden"]["w"] + p["hidden"]["b"])
    return h @ p["head"]["w"] + p["head"]["b"]

  def cross_entropy(out, batch):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(out), batch["y"][:, None], 1))

  loss = lambda p, batch: cross_entropy(logits(p, batch), batch)
  return params, batch, logits, cross_entropy, loss


@pytest.fixture(scope="module")
def mlp_matrices():
  """The MLP's explicit Hessian and Gauss-Newton matrix over the flattened params (float64)."""
  params, batch, logits, cross_entropy, loss = _mlp()
  flat, unravel = ravel_pytree(params)
  h = jax.hessian(lambda f: loss(unravel(f), batch))(flat)
  jacobian = jax.jacobian(lambda f: logits(unravel(f), batch).ravel())(flat)
  out = logits(params, batch)
  h_out = jax.hessian(lambda o: cross_entropy(o.reshape(out.shape), batch))(out.ravel())
  return np.asarray(h, np.float64), np.asarray(jacobian.T @ h_out @ jacobian, np.float64)


def test_hvp_equals_the_explicit_hessian_of_an_mlp(mlp_matrices):
  params, batch, _, _, loss = _mlp()
  v = hessian.random_like(params, 7)
  flat_v, _ = ravel_pytree(v)
  got, _ = ravel_pytree(hessian.hvp(loss, params, batch, v))
  np.testing.assert_allclose(got, mlp_matrices[0] @ np.asarray(flat_v), rtol=1e-4, atol=1e-6)


def test_lanczos_top_eigenvalues_of_an_mlp_hessian(mlp_matrices):
  params, batch, _, _, loss = _mlp()
  exact = np.linalg.eigvalsh(mlp_matrices[0])[::-1]
  values = hessian.top_eigenvalues(hessian.hessian_matvec(loss, params, batch), params, order=45)
  np.testing.assert_allclose(values[:3], exact[:3], rtol=1e-4)
  np.testing.assert_allclose(values[-1], exact[-1], rtol=1e-3, atol=1e-5)


def test_gauss_newton_product_and_spectrum(mlp_matrices):
  params, batch, logits, cross_entropy, _ = _mlp()
  v = hessian.random_like(params, 8)
  flat_v, _ = ravel_pytree(v)
  got, _ = ravel_pytree(hessian.gauss_newton_vp(logits, cross_entropy, params, batch, v))
  np.testing.assert_allclose(got, mlp_matrices[1] @ np.asarray(flat_v), rtol=1e-4, atol=1e-6)
  matvec = hessian.gauss_newton_matvec(logits, cross_entropy, params, batch)
  values = hessian.top_eigenvalues(matvec, params, order=45)
  exact = np.linalg.eigvalsh(mlp_matrices[1])[::-1]
  np.testing.assert_allclose(values[:2], exact[:2], rtol=1e-4)
  assert values[-1] > -1e-5  # G is positive semi-definite; the Hessian here is not.
  assert np.linalg.eigvalsh(mlp_matrices[0])[0] < -1e-4


def test_hvp_on_a_batch_sharded_over_8_devices_equals_one_device():
  params, batch, _, _, loss = _mlp()
  mesh = jax.make_mesh((8,), ("data",))
  sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
  v = hessian.random_like(params, 9)
  single = hessian.hessian_matvec(loss, params, batch)(v)
  with jax.set_mesh(mesh):
    multi = hessian.hessian_matvec(loss, params, sharded)(v)
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(multi)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_slq_is_exact_for_low_degree_polynomials():
  """Gauss quadrature with m nodes integrates degree < 2m exactly: v^T A^k v = sum w theta^k."""
  matrix = _symmetric(np.linspace(-1, 3, 60), seed=5)
  loss, like = _quadratic(matrix)
  density = hessian.spectral_density(hessian.hessian_matvec(loss, like, None), like, order=6,
                                     draws=1, seed=11)
  v, _ = ravel_pytree(hessian.random_like(like, 11, "rademacher"))
  v = np.asarray(v, np.float64) / np.linalg.norm(v)
  for k in range(11):
    exact = v @ np.linalg.matrix_power(matrix, k) @ v
    np.testing.assert_allclose(density.integrate(lambda t: t ** k), exact, rtol=2e-4,
                               atol=2e-5)


def test_slq_integrates_a_uniform_spectrum():
  """Eigenvalues evenly spread on [0, 1]: the density is 1 there, its moments 1 / (k + 1)."""
  loss, like = _quadratic(_symmetric(np.linspace(0, 1, 300), seed=6))
  density = hessian.spectral_density(hessian.hessian_matvec(loss, like, None), like, order=25,
                                     draws=8)
  np.testing.assert_allclose(density.weights.sum(axis=1), 1.0, rtol=1e-6)
  for k in (1, 2, 4):
    assert density.integrate(lambda t: t ** k) == pytest.approx(1 / (k + 1), abs=0.02)
  grid = np.linspace(-0.5, 1.5, 2001)
  smooth = density.on_grid(grid, sigma=0.04)
  assert np.trapezoid(smooth, grid) == pytest.approx(1.0, abs=1e-3)
  inside = (grid > 0.2) & (grid < 0.8)
  assert np.mean(smooth[inside]) == pytest.approx(1.0, abs=0.1)
  assert np.max(smooth[grid > 1.3]) < 0.01


def test_fit_batch_sharpness_recovers_a_plus_c_over_b():
  batches = np.array([8, 16, 32, 64, 128, 256, 512])
  fit = hessian.fit_batch_sharpness(batches, 3.0 + 40.0 / batches)
  assert (fit.full, fit.c) == (pytest.approx(3.0), pytest.approx(40.0))
  noisy = 3.0 + 40.0 / batches + np.random.default_rng(0).normal(0, 0.05, len(batches))
  fit = hessian.fit_batch_sharpness(batches, noisy)
  assert abs(fit.full - 3.0) < 4 * fit.full_se and abs(fit.c - 40.0) < 4 * fit.c_se
