"""EV-GP: training-free batch active learning by greedy reduction of NTK-GP posterior variance.

Hemachandra et al., "Training-Free Neural Active Learning with Initialization-Robustness
Guarantees", ICML 2023, §4: σ²(x | L) = Θ(x,x) − Θ(x,L)(Θ(L,L) + σ_n²I)⁻¹Θ(L,x) and
α_EV(L) = −(1/|X_T|) Σ_{x ∈ X_T} σ²(x | L), maximised greedily over L ∪ {x}; X_T is a reference
set (the pool in the authors' configs). The authors' other criteria `mv` (−max var) and `ent`
(−log det of the reference posterior) are options. Each greedy step is a rank-1 Schur/Cholesky
update of the conditioned kernel; `lazy=True` screens candidates with stored gain upper bounds
(exact when the gains do not grow, the assumption the authors' lazy evaluation makes).
"""
import heapq

import numpy as np

from big_batch.selection.batch_selection import _Conditioner

CRITERIA = ("ev", "mv", "ent")


def objective(gram, selected, reference, *, sigma=1e-3, criterion="ev") -> float:
  """α(L) recomputed from scratch by one direct GP solve on the rows `selected`."""
  selected, reference = np.asarray(selected, int), np.asarray(reference, int)
  k_tt = gram[np.ix_(reference, reference)]
  if len(selected):
    k_ts = gram[np.ix_(reference, selected)]
    k_ss = gram[np.ix_(selected, selected)] + sigma ** 2 * np.eye(len(selected))
    k_tt = k_tt - k_ts @ np.linalg.solve(k_ss, k_ts.T)
  if criterion == "ev":
    return -float(np.mean(np.diag(k_tt)))
  if criterion == "mv":
    return -float(np.max(np.diag(k_tt)))
  if criterion == "ent":
    return -float(np.linalg.slogdet(k_tt + sigma ** 2 * np.eye(len(reference)))[1])
  raise ValueError(f"criterion={criterion!r} is not one of {CRITERIA}")


def greedy_variance_reduction(gram, candidates, reference, batch_size, *, sigma=1e-3,
                              criterion="ev", conditioned_on=(), lazy=False,
                              check_per_round=None, rng=None):
  """Greedy argmax_x α(L ∪ {x}) for `batch_size` steps, L starting at `conditioned_on`.

  Returns (picked rows, α after each step). Candidates are rows of `gram`; the reference set
  X_T is `reference`. `check_per_round` evaluates at most that many random candidates per step
  (the authors' default is 1000); `lazy` (criterion 'ev' only) keeps a max-heap of stale gains.
  """
  if criterion not in CRITERIA:
    raise ValueError(f"criterion={criterion!r} is not one of {CRITERIA}")
  if lazy and (criterion != "ev" or check_per_round):
    raise ValueError("lazy screening is for criterion='ev' without check_per_round")
  candidates, reference = np.asarray(candidates, int), np.asarray(reference, int)
  if batch_size > len(candidates):
    raise ValueError(f"batch_size={batch_size} exceeds the {len(candidates)} candidates")
  cond = _Conditioner(gram, sigma)
  for row in conditioned_on:
    cond.add(row)
  s2 = sigma ** 2
  # k_S(X_T, candidates), kept current by rank-1 updates.
  cross = gram[np.ix_(reference, candidates)] - cond.factors[reference] @ cond.factors[candidates].T
  inv_ref = None
  if criterion == "ent":
    k_tt = gram[np.ix_(reference, reference)] - cond.factors[reference] @ cond.factors[reference].T
    inv_ref = np.linalg.inv(k_tt + s2 * np.eye(len(reference)))
  available = np.ones(len(candidates), bool)
  heap = None
  if lazy:
    gains = np.sum(cross ** 2, 0) / (cond.diag[candidates] + s2) / len(reference)
    heap = [(-g, j) for j, g in enumerate(gains)]
    heapq.heapify(heap)
  picked, trace = [], []
  for _ in range(batch_size):
    if lazy:
      j = _lazy_pick(heap, cond, reference, candidates, s2)
    else:
      pool = np.flatnonzero(available)
      if check_per_round and len(pool) > check_per_round:
        pool = (rng or np.random.default_rng(0)).choice(pool, check_per_round, replace=False)
      j = pool[int(np.argmax(_gains(criterion, cross[:, pool], cond.diag[candidates[pool]],
                                    cond.diag[reference], inv_ref, s2)))]
    available[j] = False
    row = candidates[j]
    u = cond.add(row)
    if inv_ref is not None:  # Sherman–Morrison: (A − vvᵀ)⁻¹ with v = u[X_T].
      a_v = inv_ref @ u[reference]
      inv_ref = inv_ref + np.outer(a_v, a_v) / (1 - u[reference] @ a_v)
    cross = cross - np.outer(u[reference], u[candidates])
    picked.append(row)
    trace.append(_current(criterion, cond, reference, inv_ref, s2))
  return np.array(picked), np.array(trace)


def _gains(criterion, cross, cand_var, ref_var, inv_ref, s2):
  """α(L ∪ {x}) − α(L) up to a constant, for each candidate column of `cross`."""
  denom = cand_var + s2
  if criterion == "ev":
    return np.sum(cross ** 2, 0) / denom
  if criterion == "mv":
    return -np.max(ref_var[:, None] - cross ** 2 / denom, 0)
  # 'ent': log det(A − vvᵀ/c) = log det A + log(1 − vᵀA⁻¹v/c).
  quad = np.sum(cross * (inv_ref @ cross), 0) / denom
  return -np.log(np.maximum(1 - quad, 1e-300))


def _current(criterion, cond, reference, inv_ref, s2):
  if criterion == "ev":
    return -float(np.mean(cond.diag[reference]))
  if criterion == "mv":
    return -float(np.max(cond.diag[reference]))
  return float(np.linalg.slogdet(inv_ref)[1])


def _lazy_pick(heap, cond, reference, candidates, s2):
  """Pop stale bounds until the freshly computed best gain beats the next stored bound."""
  while True:
    _, j = heapq.heappop(heap)
    col = cond.column(candidates[j])[reference]
    gain = np.sum(col ** 2) / (cond.diag[candidates[j]] + s2) / len(reference)
    if not heap or gain >= -heap[0][0]:
      return j
    heapq.heappush(heap, (-gain, j))


def ev_gp(gram, train_idx, pool_idx, batch_size, rng=None, *, sigma=1e-3, criterion="ev",
          reference=None, lazy=False, check_per_round=None):
  """EV-GP batch: greedy over the pool, conditioned on the labelled rows, X_T = the pool."""
  reference = np.asarray(pool_idx) if reference is None else reference
  return greedy_variance_reduction(gram, pool_idx, reference, batch_size, sigma=sigma,
                                   criterion=criterion, conditioned_on=train_idx, lazy=lazy,
                                   check_per_round=check_per_round, rng=rng)[0]
