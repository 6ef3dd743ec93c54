"""The gradient noise scale: closed form on linear regression, unbiasedness, the S-E trade-off."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.scaling import noise_scale


def test_b_simple_on_linear_regression_matches_the_closed_form():
  """y = x.w* + eps, x ~ N(0, I_d), eps ~ N(0, s^2), loss (x.w - y)^2 / 2 at w = w* + delta:
  G = delta and Sigma = (|delta|^2 + s^2) I + delta delta^T (Gaussian fourth moments), so
  B_simple = (d (|delta|^2 + s^2) + |delta|^2) / |delta|^2, here (8 (1 + 1) + 1) / 1 = 17."""
  d, n, small, big, batches = 8, 1 << 16, 32, 512, 96
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, d)).astype(np.float32)
  w_star = rng.normal(size=d).astype(np.float32)
  y = x @ w_star + rng.normal(size=n).astype(np.float32)
  delta = rng.normal(size=d)
  w = jnp.asarray(w_star + delta / np.linalg.norm(delta), jnp.float32)
  loss = lambda w, x, y: 0.5 * jnp.mean((x @ w - y) ** 2)
  group_grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))
  idx = np.stack([rng.choice(n, big, replace=False) for _ in range(batches)])
  grads = np.asarray(group_grads(w, x[idx].reshape(-1, small, d), y[idx].reshape(-1, small)),
                     np.float64)
  small_sq = np.mean(np.sum(grads ** 2, -1))
  big_sq = np.mean(np.sum(grads.reshape(batches, big // small, d).mean(1) ** 2, -1))
  estimate = noise_scale.two_batch_estimate(small_sq, big_sq, small, big, n)
  assert estimate.b_simple == pytest.approx(17.0, rel=0.08)
  assert estimate.grad_sq_norm == pytest.approx(1.0, rel=0.08)
  assert estimate.trace_covariance == pytest.approx(17.0, rel=0.03)


def test_the_two_batch_estimator_is_unbiased_without_replacement():
  """A population of N = 40 per-example gradients; batches of 8 drawn without replacement and
  split in 4 parts of 2. Over 200k draws the estimates average to |G|^2 and tr(Sigma); without
  the finite-population term |G|^2 comes out low by tr(Sigma) / N."""
  n, d, small, big, draws = 40, 3, 2, 8, 200_000
  rng = np.random.default_rng(1)
  per_example = rng.normal(size=(n, d)) * [3.0, 1.0, 0.5] + [0.4, -0.2, 0.1]
  mean = per_example.mean(0)
  exact_g = float(mean @ mean)
  exact_trace = float(np.sum((per_example - mean) ** 2) / (n - 1))
  rows = np.argsort(rng.random((draws, n)), axis=1)[:, :big]
  g = per_example[rows]                                     # [draws, big, d]
  small_sq = np.sum(g.reshape(draws, big // small, small, d).mean(2) ** 2, -1).mean(1)
  big_sq = np.sum(g.mean(1) ** 2, -1)
  def mean_and_se(num_examples):
    estimates = np.array([noise_scale.two_batch_estimate(s, b, small, big, num_examples)
                          for s, b in zip(small_sq, big_sq)])
    return estimates.mean(0), estimates.std(0) / np.sqrt(draws)

  (grad, trace), (grad_se, trace_se) = mean_and_se(n)
  assert abs(trace - exact_trace) < 4 * trace_se
  assert abs(grad - exact_g) < 4 * grad_se
  (uncorrected, _), _ = mean_and_se(None)
  assert uncorrected == pytest.approx(exact_g - exact_trace / n, abs=4 * grad_se)
  assert exact_g - uncorrected > 10 * grad_se


def test_b_simple_is_infinite_when_the_gradient_estimate_is_not_positive():
  assert noise_scale.b_simple(5.0, -0.1) == float("inf")
  assert noise_scale.NoiseScale(2.0, 10.0).b_simple == 5.0


def test_two_batch_estimate_needs_a_smaller_and_a_bigger_batch():
  with pytest.raises(ValueError, match="small_batch < big_batch"):
    noise_scale.two_batch_estimate(1.0, 1.0, 64, 64)


def test_steps_and_examples_trade_off_on_a_hyperbola():
  """(S/S_min - 1)(E/E_min - 1) = 1, and B_crit = E_min / S_min = B_noise (McCandlish Sec. 2.3)."""
  batches, b_noise, s_min = np.array([16, 64, 256, 1024, 4096]), 300.0, 500.0
  steps = s_min * noise_scale.steps_ratio(batches, b_noise)
  examples = batches * steps
  e_min = s_min * b_noise
  np.testing.assert_allclose(examples / e_min, noise_scale.examples_ratio(batches, b_noise))
  np.testing.assert_allclose((steps / s_min - 1) * (examples / e_min - 1), 1.0)
  fit = noise_scale.fit_critical_batch(batches, steps)
  assert (fit.s_min, fit.b_crit) == (pytest.approx(s_min), pytest.approx(b_noise))
  noisy = steps * np.exp(np.random.default_rng(2).normal(0, 0.03, len(steps)))
  fit = noise_scale.fit_critical_batch(batches, noisy)
  assert abs(fit.b_crit - b_noise) < 4 * fit.b_crit_se
  assert fit.b_crit_se > 0
