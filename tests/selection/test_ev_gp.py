"""EV-GP (selection/ev_gp.py): greedy objective against recomputation by direct GP solves."""
import numpy as np
import pytest

from big_batch.selection import ev_gp
from big_batch.selection import kernels


def _ntk(n=30, seed=0):
  x = np.random.default_rng(seed).normal(size=(n, 4))
  return kernels.ntk_gram(x, depth=3)


def test_posterior_variance_matches_direct_gp_solve():
  gram = _ntk(12)
  labelled, ref = [0, 4, 7], np.arange(12)
  direct = np.diag(gram) - np.einsum(
      "ij,jk,ki->i", gram[:, labelled],
      np.linalg.inv(gram[np.ix_(labelled, labelled)] + 1e-6 * np.eye(3)), gram[labelled])
  assert np.isclose(ev_gp.objective(gram, labelled, ref), -direct.mean())


@pytest.mark.parametrize("criterion", ev_gp.CRITERIA)
def test_greedy_objective_equals_recomputation_and_is_the_greedy_argmax(criterion):
  gram = _ntk(16 if criterion == "ent" else 30)
  n = len(gram)
  train, cand = np.array([0, 1]), np.arange(2, n)
  ref = cand if criterion != "ent" else np.arange(2, 10)
  sigma = 1e-3 if criterion != "ent" else 0.1
  picked, trace = ev_gp.greedy_variance_reduction(gram, cand, ref, 5, sigma=sigma,
                                                  criterion=criterion, conditioned_on=train)
  chosen = list(train)
  for row, value in zip(picked, trace):
    scores = {r: ev_gp.objective(gram, chosen + [r], ref, sigma=sigma, criterion=criterion)
              for r in cand if r not in chosen}
    assert np.isclose(scores[row], max(scores.values()), rtol=1e-6, atol=1e-8)
    chosen.append(row)
    assert np.isclose(value, ev_gp.objective(gram, chosen, ref, sigma=sigma,
                                             criterion=criterion), rtol=1e-6, atol=1e-8)


def test_lazy_screening_picks_what_the_full_scan_picks():
  gram = _ntk(60, 1)
  cand = np.arange(60)
  full = ev_gp.greedy_variance_reduction(gram, cand, cand, 15)
  lazy = ev_gp.greedy_variance_reduction(gram, cand, cand, 15, lazy=True)
  np.testing.assert_array_equal(full[0], lazy[0])
  np.testing.assert_allclose(full[1], lazy[1])


def test_check_per_round_and_bad_criterion():
  gram = _ntk(20)
  picked, _ = ev_gp.greedy_variance_reduction(gram, np.arange(20), np.arange(20), 6,
                                              check_per_round=5, rng=np.random.default_rng(0))
  assert len(set(picked)) == 6
  with pytest.raises(ValueError, match="criterion='bald'"):
    ev_gp.greedy_variance_reduction(gram, np.arange(20), np.arange(20), 2, criterion="bald")


def test_ev_gp_never_picks_labelled_rows():
  gram = _ntk(20)
  picked = ev_gp.ev_gp(gram, np.arange(5), np.arange(5, 20), 10)
  assert len(set(picked)) == 10 and picked.min() >= 5
