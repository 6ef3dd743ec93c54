"""Batch selection methods of the bmdal framework, on a Gram matrix over [labelled; pool] rows.

Holzmüller et al., "A Framework and Benchmark for Deep Batch Active Learning for Regression",
JMLR 2023, §4 (selection methods). Every function takes the float64 Gram matrix `gram` over all
rows, the labelled rows `train_idx`, the candidate rows `pool_idx` and returns `batch_size`
distinct rows of `pool_idx`, in the order picked. P-mode ('p') selects from the pool alone; TP-mode
('tp') treats the labelled rows as already selected. Distances are kernel distances
d(x, c)² = k(x,x) + k(c,c) − 2k(x,c); in P-mode the first pick of the distance-based methods
is the largest-norm row, argmax k(x,x) (bmdal `selection.py`, 'no point added yet').
"""
import numpy as np


def _check(gram, train_idx, pool_idx, batch_size):
  pool_idx = np.asarray(pool_idx, int)
  if batch_size > len(pool_idx):
    raise ValueError(f"batch_size={batch_size} exceeds the pool size {len(pool_idx)}")
  return np.asarray(train_idx, int), pool_idx


def random(gram, train_idx, pool_idx, batch_size, rng):
  """bmdal `random`: a uniform sample without replacement."""
  _, pool_idx = _check(gram, train_idx, pool_idx, batch_size)
  return rng.choice(pool_idx, batch_size, replace=False)


def maxdiag(gram, train_idx, pool_idx, batch_size, rng=None):
  """bmdal `maxdiag` (BALD analogue): the top-B of k(x, x)."""
  _, pool_idx = _check(gram, train_idx, pool_idx, batch_size)
  order = np.argsort(-np.diag(gram)[pool_idx], kind="stable")
  return pool_idx[order[:batch_size]]


class _Conditioner:
  """k_S(a, b) = k(a,b) − Σ_j u_j(a)u_j(b): the GP kernel conditioned on noisy observations
  (noise σ²) at the rows S, by one rank-1 (pivoted Cholesky / Schur) update per added row."""

  def __init__(self, gram, sigma):
    self.gram, self.sigma2 = gram, sigma ** 2
    self.factors = np.zeros((len(gram), 0))
    self.diag = np.diag(gram).copy()

  def column(self, row):
    return self.gram[:, row] - self.factors @ self.factors[row]

  def add(self, row):
    """Condition on row; returns u = k_S(·, row)/√(k_S(row,row) + σ²)."""
    u = self.column(row) / np.sqrt(self.diag[row] + self.sigma2)
    self.factors = np.concatenate([self.factors, u[:, None]], 1)
    self.diag = self.diag - u ** 2
    return u


def maxdet(gram, train_idx, pool_idx, batch_size, rng=None, *, sigma=1e-3, mode="p"):
  """bmdal `maxdet` (BatchBALD analogue): greedy argmax log det(k(B,B) + σ²I).

  Each step adds the row of largest conditional variance k_S(x,x) (the factor the determinant
  grows by is k_S(x,x) + σ²) and updates the diagonal by a rank-1 Cholesky step.
  """
  train_idx, pool_idx = _check(gram, train_idx, pool_idx, batch_size)
  cond = _Conditioner(gram, sigma)
  if mode == "tp":
    for row in train_idx:
      cond.add(row)
  available = np.ones(len(pool_idx), bool)
  picked = []
  for _ in range(batch_size):
    scores = np.where(available, cond.diag[pool_idx], -np.inf)
    j = int(np.argmax(scores))
    available[j] = False
    picked.append(pool_idx[j])
    cond.add(pool_idx[j])
  return np.array(picked)


def _sq_dist_to(gram, rows, centre):
  diag = np.diag(gram)
  return np.maximum(diag[rows] + diag[centre] - 2 * gram[rows, centre], 0.0)


def _initial_sq_dists(gram, train_idx, pool_idx, mode):
  """Squared distance of each pool row to its nearest centre, and that centre (−1: none)."""
  if mode == "tp" and len(train_idx):
    dists = np.stack([_sq_dist_to(gram, pool_idx, c) for c in train_idx], 1)
    nearest = np.argmin(dists, 1)
    return dists[np.arange(len(pool_idx)), nearest], np.asarray(train_idx)[nearest]
  return np.full(len(pool_idx), np.inf), np.full(len(pool_idx), -1)


def _largest_norm(gram, pool_idx):
  """The P-mode first pick: position of argmax k(x, x) in the pool."""
  return int(np.argmax(np.diag(gram)[pool_idx]))


def _add_centre(gram, pool_idx, d2, nearest, centre):
  new = _sq_dist_to(gram, pool_idx, centre)
  closer = new < d2
  return np.where(closer, new, d2), np.where(closer, centre, nearest)


def maxdist(gram, train_idx, pool_idx, batch_size, rng=None, *, mode="tp"):
  """bmdal `maxdist` (Core-Set greedy k-centre): argmax_x min_c d(x, c)²."""
  train_idx, pool_idx = _check(gram, train_idx, pool_idx, batch_size)
  d2, nearest = _initial_sq_dists(gram, train_idx, pool_idx, mode)
  picked = []
  for _ in range(batch_size):
    if np.isinf(d2).all():
      j = _largest_norm(gram, pool_idx)
    else:
      j = int(np.argmax(np.where(np.isin(pool_idx, picked), -np.inf, d2)))
    picked.append(pool_idx[j])
    d2, nearest = _add_centre(gram, pool_idx, d2, nearest, pool_idx[j])
  return np.array(picked)


def kmeanspp(gram, train_idx, pool_idx, batch_size, rng, *, mode="p"):
  """bmdal `kmeanspp` (BADGE-style): sample x ∝ min_c d(x, c)² over the selected centres.

  P-mode's first pick is the largest-norm row, as in BADGE (bmdal's rule for maxdist/lcmd).
  """
  train_idx, pool_idx = _check(gram, train_idx, pool_idx, batch_size)
  d2, nearest = _initial_sq_dists(gram, train_idx, pool_idx, mode)
  picked = []
  for _ in range(batch_size):
    w = np.where(np.isin(pool_idx, picked), 0.0, d2)
    if np.isinf(d2).all():
      j = _largest_norm(gram, pool_idx)
    elif w.sum() > 0:
      j = rng.choice(len(pool_idx), p=w / w.sum())
    else:
      j = rng.choice(np.flatnonzero(~np.isin(pool_idx, picked)))
    picked.append(pool_idx[j])
    d2, nearest = _add_centre(gram, pool_idx, d2, nearest, pool_idx[j])
  return np.array(picked)


def lcmd(gram, train_idx, pool_idx, batch_size, rng=None, *, mode="tp"):
  """bmdal `lcmd` (largest cluster maximum distance), the paper's proposed method.

  Each pool row belongs to the cluster of its nearest centre (labelled rows in TP-mode, and the
  rows picked so far); a cluster's size is the sum of its members' d² ('sq-dist' weighting).
  Pick the largest cluster and, in it, the member farthest from its centre. The first pick in
  P-mode is argmax k(x, x).
  """
  train_idx, pool_idx = _check(gram, train_idx, pool_idx, batch_size)
  d2, nearest = _initial_sq_dists(gram, train_idx, pool_idx, mode)
  picked = []
  for _ in range(batch_size):
    if np.isinf(d2).all():
      j = _largest_norm(gram, pool_idx)
      picked.append(pool_idx[j])
      d2, nearest = _add_centre(gram, pool_idx, d2, nearest, pool_idx[j])
      continue
    centres, cluster = np.unique(nearest, return_inverse=True)
    sizes = np.bincount(cluster, weights=d2, minlength=len(centres))
    members = cluster == int(np.argmax(sizes))
    j = int(np.argmax(np.where(members & ~np.isin(pool_idx, picked), d2, -np.inf)))
    picked.append(pool_idx[j])
    d2, nearest = _add_centre(gram, pool_idx, d2, nearest, pool_idx[j])
  return np.array(picked)


def bait(gram, train_idx, pool_idx, batch_size, rng=None, *, sigma=1e-3):
  """bmdal `bait-f` (BAIT, Ash et al. 2021, forward greedy) in kernel form.

  With F = Σ_{z ∈ train ∪ pool} φ(z)φ(z)ᵀ, the gain φ̃(x)ᵀFφ̃(x)/(k̃(x,x) + σ²) equals
  Σ_z k̃(z, x)²/(k̃(x,x) + σ²), the drop of tr(Σ_post F) = Σ_z k̃(z, z), where k̃ is the kernel
  conditioned on the picks so far; use it after the `posterior` transform, as bmdal does.
  """
  from big_batch.selection.ev_gp import greedy_variance_reduction
  train_idx, pool_idx = _check(gram, train_idx, pool_idx, batch_size)
  reference = np.concatenate([train_idx, pool_idx])
  return greedy_variance_reduction(gram, pool_idx, reference, batch_size, sigma=sigma)[0]


def frank_wolfe(gram, train_idx, pool_idx, batch_size, rng=None, *, max_iters_factor=10):
  """bmdal `fw` (ACS-FW, Pinsler et al. 2019, Alg. 1) in kernel form.

  Approximates L = Σ_n φ_n over the pool by L(w) = Σ_n w_n φ_n: each step f = argmax_n
  ⟨L − L(w), φ_n⟩/σ_n (σ_n = ‖φ_n‖, σ = Σσ_n), line search γ = ⟨σφ_f/σ_f − L(w), L − L(w)⟩ /
  ‖σφ_f/σ_f − L(w)‖², w ← (1−γ)w + γσ/σ_f e_f. The batch is the support of w in order of
  entry; if the support stops growing within max_iters_factor·B steps, the rest is filled by
  the largest ⟨L − L(w), φ_n⟩/σ_n among the unpicked rows.
  """
  _, pool_idx = _check(gram, train_idx, pool_idx, batch_size)
  k = gram[np.ix_(pool_idx, pool_idx)]
  norms = np.sqrt(np.maximum(np.diag(k), 1e-30))
  total = norms.sum()
  kl = k.sum(1)          # ⟨L, φ_n⟩
  ll = kl.sum()          # ⟨L, L⟩
  w = np.zeros(len(pool_idx))
  picked = []
  for _ in range(max_iters_factor * batch_size):
    kw = k @ w           # ⟨L(w), φ_n⟩
    score = (kl - kw) / norms
    f = int(np.argmax(score))
    # Inner products of s = σφ_f/σ_f with L(w) and L, and the norms involved.
    s_l, s_lw, s_s = total / norms[f] * kl[f], total / norms[f] * kw[f], total ** 2
    lw_l, lw_lw = w @ kl, w @ kw
    num = (s_l - s_lw) - (lw_l - lw_lw)
    den = s_s - 2 * s_lw + lw_lw
    gamma = float(np.clip(num / den, 0.0, 1.0)) if den > 0 else 0.0
    w = (1 - gamma) * w
    w[f] += gamma * total / norms[f]
    if f not in picked and gamma > 0:
      picked.append(f)
    if len(picked) == batch_size:
      break
  if len(picked) < batch_size:
    score = np.where(np.isin(np.arange(len(pool_idx)), picked), -np.inf, (kl - k @ w) / norms)
    picked += list(np.argsort(-score, kind="stable")[:batch_size - len(picked)])
  return pool_idx[np.array(picked, int)]
