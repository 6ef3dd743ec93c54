"""Weighted coresets by facility location on gradient features (CRAIG; Mirzasoleiman et al. 2020).

    max_{|S| <= k} F(S) = sum_{i in V} max_{j in S} s_ij,   s_ij = exp(-||g_i - g_j||_2 / d)

(d = dim g, submodlib's dense euclidean kernel, as CREST's `utils/submodular.py` uses it). F
is monotone submodular, so the greedy set is within (1 - 1/e) of the optimum (Nemhauser et
al. 1978); `lazy_greedy` finds the same set with fewer gain evaluations (Minoux 1978). The
weight of j in S is the size of its cluster, gamma_j = |{i : j = argmax_{s in S} s_is}|, with
empty clusters counted 1, as the CREST code does. numpy: the class subsets CREST selects from
hold a few hundred points.
"""
import heapq

import numpy as np


def similarity(features: np.ndarray) -> np.ndarray:
  """s_ij = exp(-||g_i - g_j||_2 / d) for the rows g_i of `features` [n, d]."""
  features = np.asarray(features, np.float64)
  squared = (features ** 2).sum(1)
  distance = np.sqrt(np.maximum(squared[:, None] + squared[None, :]
                                - 2.0 * features @ features.T, 0.0))
  return np.exp(-distance / features.shape[1])


def value(sim: np.ndarray, selected) -> float:
  """F(S) = sum_i max_{j in S} s_ij (0 for the empty set)."""
  selected = list(selected)
  return float(sim[:, selected].max(1).sum()) if selected else 0.0


def lazy_greedy(sim: np.ndarray, budget: int) -> np.ndarray:
  """The greedy maximiser of F over `budget` columns of `sim` [n, n], found lazily.

  Each step adds argmax_j F(S + j) - F(S); stale gains are upper bounds (submodularity), so a
  candidate whose refreshed gain still tops the heap is the greedy choice. Ties go to the
  lower index. Returns the selected columns in the order they were added.
  """
  n = sim.shape[1]
  if not 0 < budget <= n:
    raise ValueError(f"budget={budget} must be in [1, {n}]")
  best = np.zeros(sim.shape[0])
  heap = [(-g, j) for j, g in enumerate(sim.sum(0))]
  heapq.heapify(heap)
  order = []
  while len(order) < budget:
    _, j = heapq.heappop(heap)
    gain = float(np.maximum(sim[:, j] - best, 0.0).sum())
    if not heap or gain >= -heap[0][0]:
      order.append(j)
      best = np.maximum(best, sim[:, j])
    else:
      heapq.heappush(heap, (-gain, j))
  return np.asarray(order, np.int64)


def cluster_weights(sim: np.ndarray, selected: np.ndarray) -> np.ndarray:
  """gamma_j = #{i : j = argmax_{s in S} s_is} for j in `selected`; empty clusters get 1."""
  counts = np.bincount(np.argmax(sim[:, selected], 1), minlength=len(selected))
  return np.where(counts == 0, 1, counts).astype(np.float64)


def renormalize(weights: np.ndarray) -> np.ndarray:
  """w_j = gamma_j |S| / sum_k gamma_k: mean 1 over S (CREST `subset_trainer.py`)."""
  weights = np.asarray(weights, np.float64)
  return weights * len(weights) / weights.sum()


def class_balanced_coreset(features: np.ndarray, labels: np.ndarray, per_class: int):
  """(rows, gamma): facility location within each class, `per_class` rows each (CREST).

  `features` [n, d] are the candidates' gradient proxies and `labels` [n] their classes; a
  class with at most `per_class` candidates keeps all of them with weight 1. `rows` index
  `features`; `gamma` are the raw cluster sizes (not renormalized).
  """
  rows, gamma = [], []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    if len(members) <= per_class:
      rows.append(members)
      gamma.append(np.ones(len(members)))
      continue
    sim = similarity(features[members])
    chosen = lazy_greedy(sim, per_class)
    rows.append(members[chosen])
    gamma.append(cluster_weights(sim, chosen))
  return np.concatenate(rows), np.concatenate(gamma)
