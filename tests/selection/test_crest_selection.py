"""The CREST pieces (selection/crest.py) against their equations written out."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.selection import crest
from big_batch.selection import facility_location as fl


def test_last_layer_gradient_is_the_cross_entropy_gradient_in_the_logits():
  logits = jnp.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
  labels = jnp.array([2, 1])
  expected = jax.vmap(jax.grad(
      lambda z, y: -jax.nn.log_softmax(z)[y]))(logits, labels)
  np.testing.assert_allclose(crest.last_layer_gradients(logits, labels), expected, atol=1e-6)


def test_quadratic_value_is_the_second_order_model():
  rng = np.random.default_rng(0)
  tree = lambda: {"a": rng.normal(size=(3, 2)), "b": rng.normal(size=4)}
  g, h, d = tree(), tree(), tree()
  flat = lambda t: np.concatenate([t["a"].ravel(), t["b"]])
  expected = 1.5 + flat(g) @ flat(d) + 0.5 * flat(d) @ (flat(h) * flat(d))
  np.testing.assert_allclose(crest.quadratic_value(1.5, g, h, d), expected, rtol=1e-5)


@pytest.mark.parametrize("tau", [0.125, 0.0625])  # Binary fractions: tau L is exact.
def test_region_check_triggers_exactly_when_the_relative_error_crosses_tau(tau):
  true = 4.0
  for relative in (0.0, 0.5 * tau, 0.999 * tau, tau):
    assert not crest.outside_region(true, true * (1 + relative), tau)
    assert not crest.outside_region(true, true * (1 - relative), tau)
  for relative in (1.001 * tau, 2 * tau):
    assert crest.outside_region(true, true * (1 + relative), tau)
    assert crest.outside_region(true, true * (1 - relative), tau)


def test_hutchinson_sample_of_a_quadratic():
  a = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 4.0]])
  loss = lambda w: 0.5 * w["x"] @ (jnp.asarray(a) @ w["x"])
  w = {"x": jnp.array([1.0, -1.0, 2.0])}
  rng = np.random.default_rng(0)
  signs = {"x": np.stack([crest.rademacher(rng, w)["x"] for _ in range(2000)])}
  assert set(np.unique(signs["x"])) == {-1.0, 1.0}
  grads, diagonals = jax.vmap(lambda v: crest.hessian_diagonal_sample(loss, w, v))(signs)
  np.testing.assert_allclose(grads["x"][0], a @ np.asarray(w["x"]), rtol=1e-5)
  # The sample's variance is sum_{j != i} a_ij^2 <= 0.34: the mean of 2000 is within 0.05.
  np.testing.assert_allclose(diagonals["x"].mean(0), np.diag(a), atol=0.05)
  # v * (A v) = diag(A) + sum_{j != i} a_ij v_i v_j: exactly diag(A) for a diagonal A.
  diag_loss = lambda w: 0.5 * w["x"] @ (jnp.diag(jnp.array([2.0, 1.0, 4.0])) @ w["x"])
  _, sample = crest.hessian_diagonal_sample(diag_loss, w, crest.rademacher(rng, w))
  np.testing.assert_allclose(sample["x"], [2.0, 1.0, 4.0], rtol=1e-6)


def test_hutchinson_moments_are_bias_corrected_adahessian_moments():
  grads = [np.array([1.0, -2.0]), np.array([0.5, 0.0]), np.array([-1.0, 3.0])]
  diags = [np.array([4.0, 1.0]), np.array([2.0, 9.0]), np.array([1.0, 1.0])]
  moments = (np.zeros(2), np.zeros(2), 0)
  m = v = np.zeros(2)
  for k, (g, d) in enumerate(zip(grads, diags), 1):
    moments, got_g, got_h = crest.hutchinson_moments(moments, g, d)
    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * d * d
    np.testing.assert_allclose(got_g, m / (1 - 0.9 ** k), rtol=1e-6)
    np.testing.assert_allclose(got_h, np.sqrt(v / (1 - 0.999 ** k)) + 1e-4, rtol=1e-6)
  # After one update the moments are the sample itself: g, |diag| + eps.
  _, g1, h1 = crest.hutchinson_moments((np.zeros(2), np.zeros(2), 0), grads[0], -diags[0])
  np.testing.assert_allclose(g1, grads[0], rtol=1e-6)
  np.testing.assert_allclose(h1, diags[0] + 1e-4, rtol=1e-6)


def test_adapted_schedule():
  assert crest.adapted_schedule(10.0, 10.0, 1.0, 5.0, 32) == (1, 5)
  assert crest.adapted_schedule(10.0, 4.0, 1.0, 5.0, 32) == (3, 15)    # ceil(2.5) = 3
  assert crest.adapted_schedule(10.0, 1.0, 1.0, 5.0, 32) == (10, 32)   # P capped
  assert crest.adapted_schedule(10.0, 40.0, 1.0, 5.0, 32) == (1, 5)    # curvature grew
  assert crest.adapted_schedule(10.0, 5.0, 1.5, 2.0, 32) == (3, 6)


def test_class_balanced_subsets_draw_from_the_pool_per_class():
  labels = np.repeat(np.arange(3), 20)
  pool = np.ones(60, bool)
  pool[[0, 1, 2, 25]] = False
  subsets = crest.class_balanced_subsets(np.random.default_rng(0), labels, pool, 4, 6)
  assert subsets.shape == (4, 18)
  for subset in subsets:
    np.testing.assert_array_equal(np.bincount(labels[subset]), [6, 6, 6])
    assert len(np.unique(subset)) == 18 and pool[subset].all()
  with pytest.raises(ValueError, match="class 0 has 17 rows"):
    crest.class_balanced_subsets(np.random.default_rng(0), labels, pool, 1, 18)


def test_mini_batch_coresets_are_class_balanced_with_weights_of_mean_one():
  rng = np.random.default_rng(1)
  labels = np.repeat(np.arange(4), 25)
  subsets = crest.class_balanced_subsets(rng, labels, np.ones(100, bool), 3, 10)
  features = rng.normal(size=(subsets.size, 4))
  rows, weights = crest.mini_batch_coresets(features, labels[subsets.ravel()], subsets, 3)
  assert len(rows) == 3 * 4 * 3
  np.testing.assert_allclose(weights.mean(), 1.0)
  for p in range(3):
    part = rows[p * 12:(p + 1) * 12]
    assert np.isin(part, subsets[p]).all()
    np.testing.assert_array_equal(np.bincount(labels[part]), [3, 3, 3, 3])
  # The raw weights are the cluster sizes: each subset's 40 rows are split among its 12.
  gamma = weights * 10 * 120 / 36 / 10
  np.testing.assert_allclose(gamma.reshape(3, 12).sum(1), [40, 40, 40], rtol=1e-6)


def test_rebuild_pool_keeps_unlearned_and_unseen_rows():
  labels = np.array([0] * 6 + [1] * 6)
  watch = -np.ones((2, 12))
  watch[0, :4] = 0.01          # Learned rows of class 0 ...
  watch[1, 3] = 0.5            # ... except row 3, hard in the latest epoch.
  watch[0, 6:12] = 0.01        # All of class 1 learned.
  pool = np.ones(12, bool)
  new = crest.rebuild_pool(watch, labels, pool, per_class=2, drop_thresh=0.1, min_size=3)
  # Class 0 keeps 3 (hard) and 4, 5 (unseen); class 1 would keep none: it keeps its pool.
  np.testing.assert_array_equal(np.flatnonzero(new), [3, 4, 5, 6, 7, 8, 9, 10, 11])
  assert crest.rebuild_pool(watch, labels, pool, 2, 0.1, min_size=9) is pool  # Too small.


def test_weighted_coreset_gradient_beats_a_random_batch_on_clustered_data():
  """Tight clusters of unequal size: a point's gradient is its cluster's, so facility
  location on the last-layer gradients picks one point per cluster and its cluster-size
  weight makes the weighted sum the full gradient (CRAIG Thm. 1); a random batch of the same
  size misses and miscounts clusters."""
  rng = np.random.default_rng(0)
  dim, classes = 5, 3
  sizes = [40, 25, 15, 10, 6, 4]
  centers = rng.normal(size=(len(sizes), dim)) * 3
  x = np.concatenate([c + 0.01 * rng.normal(size=(n, dim)) for c, n in zip(centers, sizes)])
  y = np.repeat(np.arange(len(sizes)) % classes, sizes)
  w = rng.normal(size=(dim, classes))
  probs = np.asarray(jax.nn.softmax(x @ w))
  residual = probs - np.eye(classes)[y]            # softmax - onehot
  per_example = np.einsum("nd,nc->ndc", x, residual).reshape(len(x), -1)  # grad of l_i in w
  full = per_example.mean(0)
  rows, gamma = fl.class_balanced_coreset(residual, y, per_class=2)
  weights = fl.renormalize(gamma)
  coreset_error = np.linalg.norm(full - (weights[:, None] * per_example[rows]).mean(0))
  random_errors = [np.linalg.norm(full - per_example[rng.choice(len(x), len(rows), False)]
                                  .mean(0)) for _ in range(500)]
  assert coreset_error < 0.1 * np.mean(random_errors)
  assert coreset_error < np.quantile(random_errors, 0.01)
