"""Power Lines laws (Bergsma et al. 2025) and the fitting helpers, against closed forms."""
import numpy as np
import pytest

from big_batch.scaling import power_lines


def test_timescale_is_b_over_eta_lambda_d():
  """B = 256 sequences x 512 tokens, eta 3e-3, lambda 0.1, D = 1e9 tokens."""
  tau = power_lines.timescale(256 * 512, 3e-3, 0.1, 1e9)
  assert tau == pytest.approx(256 * 512 / (3e-3 * 0.1 * 1e9), rel=1e-12)


@pytest.mark.parametrize("tau", [0.05, 0.3, 2.0])
def test_weight_decay_for_timescale_round_trips(tau):
  wd = power_lines.weight_decay_for_timescale(tau, 4096, 1e-3, 5e7)
  assert power_lines.timescale(4096, 1e-3, wd, 5e7) == pytest.approx(tau, rel=1e-12)


def test_doubling_the_batch_at_a_fixed_learning_rate_doubles_the_weight_decay():
  one = power_lines.weight_decay_for_timescale(0.2, 1024, 2e-3, 1e8)
  two = power_lines.weight_decay_for_timescale(0.2, 2048, 2e-3, 1e8)
  assert two == pytest.approx(2 * one, rel=1e-12)


@pytest.mark.parametrize("law, exponent", [
    (power_lines.b_opt, power_lines.B_OPT_EXPONENT),
    (power_lines.b_crit, power_lines.B_CRIT_EXPONENT),
])
def test_batch_laws_have_their_exponent_as_log_log_slope(law, exponent):
  d = np.geomspace(1e8, 1e11, 7)
  b = law(d, reference_batch=2 ** 19, reference_size=1e9)
  np.testing.assert_allclose(np.diff(np.log(b)) / np.diff(np.log(d)), exponent, rtol=1e-10)
  assert law(1e9, 2 ** 19, 1e9) == pytest.approx(2 ** 19)
  assert np.all(np.diff(b) > 0)


def test_batch_law_matches_nanochat_doubling():
  """B_opt grows 2^0.383 = 1.30x when D doubles (nanochat: 'doubling tokens -> 1.3x')."""
  assert power_lines.b_opt(2e9, 2 ** 19, 1e9) / 2 ** 19 == pytest.approx(1.304, abs=1e-3)


def test_tau_opt_falls_with_tokens_per_parameter():
  tpp = np.array([5.0, 20.0, 80.0, 320.0])
  tau = power_lines.tau_opt(tpp, reference_tau=0.2, reference_tokens_per_param=20.0)
  assert tau[1] == pytest.approx(0.2)
  np.testing.assert_allclose(np.diff(np.log(tau)) / np.diff(np.log(tpp)),
                             power_lines.TAU_EXPONENT, rtol=1e-10)


def test_non_positive_inputs_are_rejected():
  with pytest.raises(ValueError, match="weight_decay=0"):
    power_lines.timescale(1, 1e-3, 0, 10)


def test_fit_power_law_recovers_the_exponent_and_covers_it():
  x = np.geomspace(1, 100, 8)
  exact = power_lines.fit_power_law(x, 3.0 * x ** -0.5)
  assert (exact.exponent, exact.prefactor) == (pytest.approx(-0.5), pytest.approx(3.0))
  assert exact(10.0) == pytest.approx(3.0 * 10 ** -0.5)
  rng = np.random.default_rng(0)
  covered = 0
  for _ in range(200):
    fit = power_lines.fit_power_law(x, 3.0 * x ** -0.5 * np.exp(rng.normal(0, 0.1, x.size)))
    low, high = fit.interval(0.9)
    covered += low <= -0.5 <= high
  assert 0.84 <= covered / 200 <= 0.96  # A 90% interval covers about 90% of the time.
  assert np.isnan(power_lines.fit_power_law([1, 2], [1, 3]).interval()[0])


def test_fit_log_optimum_finds_the_vertex_of_a_log_parabola():
  wd = np.geomspace(1e-3, 1, 7)
  loss = 2.0 + 0.3 * (np.log(wd) - np.log(0.03)) ** 2
  optimum = power_lines.fit_log_optimum(wd, loss)
  assert optimum.resolved and optimum.value == pytest.approx(0.03, rel=1e-6)
  noisy = loss + np.random.default_rng(1).normal(0, 0.02, wd.size)
  optimum = power_lines.fit_log_optimum(wd, noisy)
  assert optimum.lower < 0.03 < optimum.upper and optimum.lower < optimum.value < optimum.upper


def test_fit_log_optimum_at_the_edge_of_the_grid_is_unresolved():
  wd = np.geomspace(1e-3, 1, 5)
  optimum = power_lines.fit_log_optimum(wd, 1.0 + wd)  # Best at the smallest value.
  assert not optimum.resolved
  assert (optimum.value, optimum.upper) == (pytest.approx(1e-3), pytest.approx(wd[1]))
