"""NB and ZINB log-likelihoods against scipy.stats, the Gaussian KL against numerical
integration, and the two warm-up schedules against their formulas."""
import math

import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from big_batch.singlecell import likelihoods
from big_batch.singlecell import task as ba_scvi

RNG = np.random.default_rng(0)
X = np.concatenate([np.zeros(20), RNG.integers(1, 60, 80)]).astype(np.float64)
MU = RNG.uniform(0.05, 40.0, 100)
THETA = RNG.uniform(0.1, 20.0, 100)
PI = RNG.normal(0.0, 2.0, 100)


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def test_log_nb_matches_scipy_nbinom():
  want = scipy.stats.nbinom.logpmf(X, THETA, THETA / (THETA + MU))
  np.testing.assert_allclose(np.asarray(likelihoods.log_nb(X, MU, THETA)), want, atol=1e-6)


def test_log_zinb_matches_a_bernoulli_mixture_with_scipy_nbinom():
  p_drop = scipy.special.expit(PI)
  nb = scipy.stats.nbinom.pmf(X, THETA, THETA / (THETA + MU))
  want = np.log(p_drop * (X == 0) + (1 - p_drop) * nb)
  got = np.asarray(likelihoods.log_zinb(X, MU, THETA, PI))
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_zinb_is_a_distribution_over_the_counts():
  x = np.arange(0, 400, dtype=np.float64)
  total = np.exp(np.asarray(likelihoods.log_zinb(x, 7.0, 1.5, 0.4))).sum()
  assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("m,v,m0,v0", [(0.3, 0.5, 0.0, 1.0), (-1.2, 2.0, 0.5, 0.3),
                                       (2.0, 0.01, 7.5, 0.2)])
def test_gaussian_kl_matches_numerical_integration(m, v, m0, v0):
  p, q = scipy.stats.norm(m, math.sqrt(v)), scipy.stats.norm(m0, math.sqrt(v0))
  lo, hi = m - 12 * math.sqrt(v), m + 12 * math.sqrt(v)
  want = scipy.integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), lo, hi,
                              epsabs=1e-12, limit=200)[0]
  assert float(likelihoods.kl_normal(m, v, m0, v0)) == pytest.approx(want, rel=1e-7, abs=1e-10)


def test_warmups_follow_their_formulas():
  assert float(ba_scvi.kl_warmup(250, 1000)) == pytest.approx(0.25)
  assert float(ba_scvi.kl_warmup(5000, 1000)) == 1.0
  for t in (0, 100, 500, 900, 2000):
    want = 1 / (1 + math.exp(-10 * (t / 1000 - 0.5)))
    assert float(ba_scvi.adversary_warmup(t, 1000)) == pytest.approx(want, rel=1e-6)
  assert float(ba_scvi.adversary_warmup(7, 0)) == 1.0
