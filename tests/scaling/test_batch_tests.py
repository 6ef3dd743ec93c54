"""The batch-size tests against closed forms (linear regression with known noise), a numpy
brute force over per-example gradients, and the authors' orthogonal component; micro-batch
moments against the whole batch; the batch-size rule's invariants."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.scaling import batch_tests

D, SIGMA = 4, 0.5
DELTA = np.array([0.6, -0.3, 0.2, 0.1])  # w - w*: the population gradient at w.


def regression(rows, seed=0):
  """x ~ N(0, I_D), y = x . w* + SIGMA * noise, at w = w* + DELTA, f_i = (x_i . w - y_i)^2 / 2:
  grad f_i = x_i (x_i . DELTA - SIGMA e_i), and grad F = DELTA."""
  rng = np.random.default_rng(seed)
  w_star = rng.normal(size=D)
  x = rng.normal(size=(rows, D))
  y = x @ w_star + SIGMA * rng.normal(size=rows)
  params = {"w": jnp.asarray(w_star + DELTA, jnp.float32)}
  return params, {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}


def losses(params, rows):
  return 0.5 * jnp.square(rows["x"] @ params["w"] - rows["y"])


def loss(params, rows):
  return losses(params, rows).mean()


@jax.jit
def gradient_moments(params, rows):
  return batch_tests.moments(batch_tests.per_example_gradients(loss, params, rows))


@jax.jit
def product_moments(params, rows, direction):
  return batch_tests.moments(batch_tests.inner_products(losses, params, rows, direction))


@functools.partial(jax.jit, static_argnames=("test", "eta", "theta", "nu"))
def whole_batch(test, params, batch, **tolerances):
  """The test on one batch held whole (one micro-batch)."""
  gradient = gradient_moments(params, batch)
  products = product_moments(params, batch, gradient.mean)
  rows = batch["y"].shape[0]
  return batch_tests.statistics(test, gradient, rows, products=products, **tolerances)


def test_the_statistics_match_their_closed_forms_on_linear_regression():
  """Population values, with g -> DELTA for large b and x Gaussian:
  sum_j Var(u_j) = (D + 1)|DELTA|^2 + D SIGMA^2,  Var(<u, DELTA>) = 2|DELTA|^4 + SIGMA^2 |DELTA|^2,
  sum_j Var(w_j) = (D - 1)(|DELTA|^2 + SIGMA^2),  Var(u_j) = |DELTA|^2 + DELTA_j^2 + SIGMA^2."""
  params, batch = regression(400_000)
  eta, theta, nu = 0.1, 0.3, 0.7
  sq = np.sum(DELTA**2)
  variance = (D + 1) * sq + D * SIGMA**2
  ip_variance = 2 * sq**2 + SIGMA**2 * sq
  orthogonal = (D - 1) * (sq + SIGMA**2)
  coordinate = np.max((sq + DELTA**2 + SIGMA**2) / (eta**2 * DELTA**2))
  expected = {"norm": variance / (eta**2 * sq), "inner_product": ip_variance / (theta**2 * sq**2),
              "orthogonality": orthogonal / (nu**2 * sq), "coordinate": coordinate}
  for test, want in expected.items():
    got = whole_batch(test, params, batch, eta=eta, theta=theta, nu=nu)
    np.testing.assert_allclose(got["proposed"], want, rtol=0.03, err_msg=test)
  got = whole_batch("norm", params, batch)
  np.testing.assert_allclose(got["variance"], variance, rtol=0.02)
  np.testing.assert_allclose(got["grad_sq_norm"], sq, rtol=0.02)


def brute_force(params, batch):
  """u_i by differentiating each example's loss alone, in float64 numpy."""
  x, y = np.asarray(batch["x"], np.float64), np.asarray(batch["y"], np.float64)
  residual = x @ np.asarray(params["w"], np.float64) - y
  return x * residual[:, None]


def test_statistics_equal_the_sample_formulas_and_the_orthogonal_part_is_orthogonal():
  """The authors' sample statistics (tests.py), written out on explicit per-example gradients:
  ||var(u)||_1 with correction 1, var(<u_i, g>), and var of w_i = u_i - <u_i,g>/||g||^2 g."""
  params, batch = regression(96, seed=1)
  u = brute_force(params, batch)
  g = u.mean(0)
  products = u @ g
  orthogonal = u - np.outer(products / (g @ g), g)
  np.testing.assert_allclose(orthogonal @ g, 0.0, atol=1e-9 * np.abs(u @ g).max())
  eta, theta, nu = 0.2, 0.4, 0.9
  want = {"norm": u.var(0, ddof=1).sum() / (eta**2 * g @ g),
          "inner_product": products.var(ddof=1) / (theta**2 * (g @ g) ** 2),
          "orthogonality": orthogonal.var(0, ddof=1).sum() / (nu**2 * g @ g),
          "coordinate": np.max(u.var(0, ddof=1) / (eta**2 * g**2))}
  want["augmented_inner_product"] = max(want["inner_product"], want["orthogonality"])
  for test in batch_tests.TESTS:
    got = whole_batch(test, params, batch, eta=eta, theta=theta, nu=nu)
    np.testing.assert_allclose(got["proposed"], want[test], rtol=1e-4, err_msg=test)
  got = whole_batch("augmented_inner_product", params, batch)
  np.testing.assert_allclose(got["variance"], u.var(0, ddof=1).sum(), rtol=1e-5)
  np.testing.assert_allclose(got["inner_product_variance"], products.var(ddof=1), rtol=1e-4)
  np.testing.assert_allclose(got["grad_sq_norm"], g @ g, rtol=1e-5)


def test_per_example_gradients_and_inner_products_against_the_closed_form():
  params, batch = regression(32, seed=2)
  u = brute_force(params, batch)
  got = batch_tests.per_example_gradients(loss, params, batch)
  np.testing.assert_allclose(got["w"], u, rtol=1e-5, atol=1e-6)
  direction = {"w": jnp.array([0.3, -1.0, 2.0, 0.5])}
  np.testing.assert_allclose(batch_tests.inner_products(losses, params, batch, direction),
                             u @ np.asarray(direction["w"]), rtol=1e-5, atol=1e-5)


def test_moments_of_micro_batches_average_to_the_whole_batch_variance():
  """Law of total variance: 4 equal micro-batches with different means (sorted rows) give the
  whole batch's sample variance exactly, for gradients and for inner products."""
  params, batch = regression(64, seed=3)
  order = jnp.argsort(batch["y"])
  batch = jax.tree.map(lambda a: a[order], batch)
  parts = [jax.tree.map(lambda a, i=i: a[16 * i:16 * (i + 1)], batch) for i in range(4)]
  stack = lambda ms: jax.tree.map(lambda *xs: jnp.stack(xs), *ms)
  gradient = batch_tests.mean_of(stack([gradient_moments(params, p) for p in parts]))
  products = batch_tests.mean_of(stack([product_moments(params, p, gradient.mean)
                                        for p in parts]))
  u = brute_force(params, batch)
  means = u.reshape(4, 16, D).mean(1)
  assert np.ptp(means, axis=0).max() > 0.5 * u.std(0).max()  # The micro-batches differ.
  np.testing.assert_allclose(batch_tests.variance(gradient, 64)["w"], u.var(0, ddof=1),
                             rtol=1e-5)
  np.testing.assert_allclose(batch_tests.variance(products, 64), (u @ u.mean(0)).var(ddof=1),
                             rtol=1e-4)
  split = batch_tests.statistics("augmented_inner_product", gradient, 64, products=products)
  whole = whole_batch("augmented_inner_product", params, batch)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4), split, whole)


def test_the_batch_never_shrinks_and_never_passes_the_cap():
  rng = np.random.default_rng(4)
  size, sizes = 2, []
  for proposed in rng.lognormal(mean=3.0, sigma=2.0, size=200):
    size = int(batch_tests.next_batch_size(size, jnp.float32(proposed), 1000))
    sizes.append(size)
  assert sizes == sorted(sizes) and sizes[-1] == 1000 and sizes[0] >= 2
  assert int(batch_tests.next_batch_size(40, jnp.float32(40.2), 1000)) == 41  # ceil
  assert int(batch_tests.next_batch_size(40, jnp.float32(np.nan), 1000)) == 40
  assert int(batch_tests.next_batch_size(40, jnp.float32(np.inf), 1000)) == 1000
  assert int(batch_tests.next_batch_size(40, jnp.float32(3e12), 1000)) == 1000


def test_with_an_infinite_tolerance_the_batch_stays_fixed():
  params, batch = regression(64, seed=5)
  for test in batch_tests.TESTS:
    got = whole_batch(test, params, batch, eta=np.inf, theta=np.inf, nu=np.inf)
    assert float(got["proposed"]) == 0.0, test
    assert int(batch_tests.next_batch_size(64, got["proposed"], 4096)) == 64


def test_bad_arguments_are_named():
  params, batch = regression(8)
  gradient = batch_tests.moments(batch_tests.per_example_gradients(loss, params, batch))
  with pytest.raises(ValueError, match="'orthogonal' is not one of"):
    batch_tests.statistics("orthogonal", gradient, 8)
  with pytest.raises(ValueError, match="the 'inner_product' test needs the moments"):
    batch_tests.statistics("inner_product", gradient, 8)
