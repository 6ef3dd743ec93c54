"""Selection methods of selection/batch_selection.py and select_batch, against brute force."""
import itertools

import jax
import numpy as np
import pytest

from big_batch.selection import batch_selection as bs
from big_batch.selection import kernel_transforms as kt
from big_batch.selection import regression_fit
from big_batch.selection.bmdal import select_batch


def _gram(n=12, d=4, seed=0):
  phi = np.random.default_rng(seed).normal(size=(n, d))
  return phi @ phi.T, phi


def test_posterior_transform_is_the_direct_gp_solve():
  gram, phi = _gram()
  train = np.array([0, 3, 5])
  post = kt.posterior(kt.KernelMatrix.from_features(phi), train, sigma=0.1)
  direct = gram - gram[:, train] @ np.linalg.inv(gram[np.ix_(train, train)] + 0.01 * np.eye(3)) \
      @ gram[train]
  np.testing.assert_allclose(post.gram, direct, atol=1e-10)
  np.testing.assert_allclose(post.features @ post.features.T, direct, atol=1e-10)


def test_scale_sketch_and_ensemble():
  gram, phi = _gram()
  k = kt.KernelMatrix.from_features(phi)
  scaled = kt.scale(k, np.array([1, 2]))
  assert np.isclose(np.mean(np.diag(scaled.gram)[[1, 2]]), 1.0)
  rng = np.random.default_rng(0)
  mean = np.mean([kt.sketch(k, 64, rng).gram for _ in range(400)], 0)
  np.testing.assert_allclose(mean, gram, atol=0.05 * np.abs(gram).max())
  np.testing.assert_allclose(kt.ensemble([k, scaled]).gram, gram + scaled.gram)


def test_maxdet_is_the_greedy_log_det_maximizer():
  gram, _ = _gram(10, 3)
  train, pool = np.array([0, 1]), np.arange(2, 10)
  s2 = 1e-2
  for mode in ("p", "tp"):
    picked = bs.maxdet(gram, train, pool, 4, sigma=0.1, mode=mode)
    chosen = list(train) if mode == "tp" else []
    for row in picked:
      def logdet(extra):
        rows = chosen + [extra]
        return np.linalg.slogdet(gram[np.ix_(rows, rows)] + s2 * np.eye(len(rows)))[1]
      best = max((r for r in pool if r not in chosen), key=logdet)
      assert row == best
      chosen.append(row)


def _brute_lcmd(gram, train, pool, b, mode):
  """A direct reading of LCMD's definition; P-mode starts at the largest-norm pool row."""
  d2 = lambda a, c: gram[a, a] + gram[c, c] - 2 * gram[a, c]
  largest = max(pool, key=lambda x: gram[x, x])
  centres, picked = (list(train), []) if mode == "tp" else ([], [largest])
  centres += picked
  for _ in range(b - len(picked)):
    nearest = {x: min(centres, key=lambda c: d2(x, c)) for x in pool}
    size = {c: sum(d2(x, c) for x in pool if nearest[x] == c) for c in centres}
    big = max(centres, key=lambda c: size[c])
    x = max((x for x in pool if nearest[x] == big and x not in picked), key=lambda x: d2(x, big))
    picked.append(x)
    centres.append(x)
  return picked


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["tp", "p"])
def test_lcmd_equals_brute_force_reading_of_its_definition(seed, mode):
  gram, _ = _gram(9, 2, seed)
  train, pool = [0, 1], list(range(2, 9))
  assert list(bs.lcmd(gram, train, pool, 4, mode=mode)) == _brute_lcmd(gram, train, pool, 4, mode)


def test_maxdist_is_greedy_k_centre_and_frank_wolfe_reduces_the_embedding_error():
  gram, _ = _gram(10, 3)
  train, pool = np.array([0]), np.arange(1, 10)
  picked = bs.maxdist(gram, train, pool, 3)
  d2 = lambda a, c: gram[a, a] + gram[c, c] - 2 * gram[a, c]
  centres = [0]
  for row in picked:
    best = max((r for r in pool if r not in centres), key=lambda r: min(d2(r, c) for c in centres))
    assert row == best
    centres.append(row)
  fw = bs.frank_wolfe(gram, train, pool, 5)
  assert len(set(fw)) == 5 and set(fw) <= set(pool)


def test_bait_gain_is_the_drop_of_the_trace_objective():
  gram, _ = _gram(8, 3)
  train, pool = np.array([0, 1]), np.arange(2, 8)
  picked = bs.bait(gram, train, pool, 1, sigma=0.1)
  ref = np.arange(8)

  def trace_after(row):  # tr of the posterior after observing row, by a direct solve.
    k = gram[:, [row]]
    return np.trace(gram - k @ np.linalg.solve(gram[[row]][:, [row]] + 0.01 * np.eye(1), k.T))
  assert picked[0] == min(pool, key=trace_after)


def test_kmeanspp_samples_proportional_to_squared_distance():
  gram, _ = _gram(6, 2)
  train, pool = np.array([0]), np.arange(1, 6)
  d2 = np.diag(gram)[pool] + gram[0, 0] - 2 * gram[pool, 0]
  counts = np.bincount([bs.kmeanspp(gram, train, pool, 1, np.random.default_rng(s),
                                    mode="tp")[0] for s in range(3000)], minlength=6)[1:]
  np.testing.assert_allclose(counts / 3000, d2 / d2.sum(), atol=0.03)


METHOD_SPECS = [("random", "linear", ()), ("maxdiag", "ll", ("posterior",)),
                ("maxdet", "ll", ("posterior",)), ("bait", "grad", (("sketch", 64), "posterior")),
                ("kmeanspp", "ll", ("posterior",)), ("maxdist", "ll", ()),
                ("lcmd", "grad", (("sketch", 64),)), ("fw", "ll", ()), ("ev_gp", "ntk", ()),
                ("lcmd", "nngp", ("scale",))]


@pytest.mark.parametrize("method,kernel,transforms", METHOD_SPECS)
def test_select_batch_is_distinct_new_and_deterministic(method, kernel, transforms):
  x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
  model = regression_fit.make_model(jax.random.key(0), 3, 1, (8,))
  labelled, pool = x[:10], x[10:]
  run = lambda seed: select_batch([model], labelled, pool, 7, kernel=kernel,
                                  transforms=transforms, method=method, key=jax.random.key(seed))
  a = run(0)
  assert len(set(a)) == 7 and a.min() >= 0 and a.max() < len(pool)
  np.testing.assert_array_equal(a, run(0))


def test_select_batch_refuses_bad_arguments():
  x = np.zeros((5, 3), np.float32)
  model = regression_fit.make_model(jax.random.key(0), 3, 1, (8,))
  with pytest.raises(ValueError, match="method='nope'"):
    select_batch([model], x, x, 2, method="nope", key=jax.random.key(0))
  with pytest.raises(ValueError, match="batch_size=9"):
    select_batch([model], x, x, 9, key=jax.random.key(0))
  with pytest.raises(ValueError, match="'ens'"):
    select_batch([model, model], x, x, 2, kernel="ll", key=jax.random.key(0))
