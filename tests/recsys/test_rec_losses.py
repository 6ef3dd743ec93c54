"""NT-Xent, L_cl2, R and L_rec (recsys/losses.py) against loops over the paper's equations
(MCLRec Eqs. 4, 6, 9, 11-13) in plain numpy, float64."""
import numpy as np
import jax.numpy as jnp
import pytest

from big_batch.recsys import losses

RNG = np.random.default_rng(0)


def views(b=5, d=4):
  return [RNG.normal(size=(b, d)).astype(np.float32) for _ in range(4)]


def numpy_rows(a, b, tau=1.0):
  """(positive, negatives) per row r of [a; b]: s(z_r, z_partner), s(z_r, z_j) otherwise."""
  z = np.concatenate([a, b]).astype(np.float64)
  n = len(a)
  out = []
  for r in range(2 * n):
    partner = (r + n) % (2 * n)
    pos = z[r] @ z[partner] / tau
    neg = [z[r] @ z[j] / tau for j in range(2 * n) if j not in (r, partner)]
    out.append((pos, np.array(neg)))
  return out


def numpy_nt_xent(a, b, tau=1.0):
  terms = [-np.log(np.exp(p) / (np.exp(p) + np.exp(n).sum())) for p, n in numpy_rows(a, b, tau)]
  return np.mean(terms)


def numpy_r(a, b):
  rows = numpy_rows(a, b)
  pos_terms, neg_terms = [], []
  for p, n in rows:
    o_min, o_max = min(p, n.max()), max(p, n.max())
    pos_terms.append(max(p - o_min, 0.0))
    neg_terms += [max(o_max - x, 0.0) for x in n]
  return np.mean(pos_terms) + np.mean(neg_terms)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_nt_xent_is_the_mean_over_both_directions_with_in_batch_negatives(tau):
  a, b, _, _ = views()
  np.testing.assert_allclose(losses.nt_xent(a, b, tau), numpy_nt_xent(a, b, tau), rtol=1e-5)
  assert losses.similarities(a, b)[1].shape == (10, 8)  # 2(B - 1) negatives per row.


def test_cl1_cl2_and_r_compose_the_three_pairs():
  h1, h2, z1, z2 = views()
  np.testing.assert_allclose(losses.cl1(h1, h2), numpy_nt_xent(h1, h2), rtol=1e-5)
  expected = numpy_nt_xent(h1, z2) + numpy_nt_xent(h2, z1) + numpy_nt_xent(z1, z2)
  np.testing.assert_allclose(losses.cl2(h1, h2, z1, z2), expected, rtol=1e-5)
  expected_r = 0.1 * (numpy_r(h1, z2) + numpy_r(h2, z1) + numpy_r(z1, z2))
  np.testing.assert_allclose(losses.regularizer(h1, h2, z1, z2), expected_r, rtol=1e-5)


def test_r_is_zero_when_each_positive_is_the_hardest_pair_tied_with_every_negative():
  # All rows equal: every similarity is the same, so sigma+ = o_min = o_max = sigma-.
  a = np.ones((3, 2), np.float32)
  assert float(losses.contrastive_regularizer(a, a)) == 0.0
  # Separated positives: R = mean(sigma+ - max sigma-) + mean(sigma+ - sigma-) per row.
  a, b = views(4, 3)[:2]
  np.testing.assert_allclose(losses.contrastive_regularizer(a, b), numpy_r(a, b), rtol=1e-5)


def test_recommendation_loss_is_full_softmax_cross_entropy():
  scores = RNG.normal(size=(3, 7)).astype(np.float32)
  targets = np.array([1, 6, 3])
  s = scores.astype(np.float64)
  expected = [-s[i, t] + np.log(np.exp(s[i]).sum()) for i, t in enumerate(targets)]
  np.testing.assert_allclose(losses.recommendation(jnp.asarray(scores), jnp.asarray(targets)),
                             expected, rtol=1e-5)
