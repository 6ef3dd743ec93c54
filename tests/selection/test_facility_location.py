"""Facility location (selection/facility_location.py) against brute force and the definitions."""
import itertools

import numpy as np
import pytest

from big_batch.selection import facility_location as fl


def _features(seed, n=10, d=4):
  return np.random.default_rng(seed).normal(size=(n, d))


def test_similarity_is_the_exponential_euclidean_kernel():
  g = _features(0, 6, 3)
  expected = np.array([[np.exp(-np.linalg.norm(a - b) / 3) for b in g] for a in g])
  np.testing.assert_allclose(fl.similarity(g), expected, rtol=1e-6, atol=1e-6)


def _plain_greedy(sim, budget):
  """Greedy written out: add the column with the largest marginal gain, ties to the lowest."""
  chosen = []
  for _ in range(budget):
    gains = [fl.value(sim, chosen + [j]) - fl.value(sim, chosen) if j not in chosen else -1
             for j in range(sim.shape[1])]
    chosen.append(int(np.argmax(gains)))
  return chosen


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("budget", [1, 3, 5])
def test_lazy_greedy_equals_greedy_and_is_within_1_minus_1_over_e(seed, budget):
  sim = fl.similarity(_features(seed))
  lazy = fl.lazy_greedy(sim, budget)
  assert list(lazy) == _plain_greedy(sim, budget)
  optimum = max(fl.value(sim, s) for s in itertools.combinations(range(10), budget))
  assert fl.value(sim, lazy) >= (1 - 1 / np.e) * optimum - 1e-12
  assert fl.value(sim, lazy) <= optimum + 1e-12


def test_cluster_weights_count_nearest_selected_and_renormalize_to_the_coreset_size():
  sim = fl.similarity(_features(3, 40))
  chosen = fl.lazy_greedy(sim, 6)
  gamma = fl.cluster_weights(sim, chosen)
  counted = np.zeros(6)
  for i in range(40):
    counted[int(np.argmax([sim[i, j] for j in chosen]))] += 1
  np.testing.assert_array_equal(gamma, np.where(counted == 0, 1, counted))
  assert gamma.sum() >= 40  # Every point is in one cluster; empty clusters add 1.
  w = fl.renormalize(gamma)
  np.testing.assert_allclose(w.sum(), 6)
  np.testing.assert_allclose(w / w[0], gamma / gamma[0])


def test_empty_clusters_weigh_one():
  # Two identical points and a far one: selecting a duplicate leaves it an empty cluster.
  sim = np.array([[1.0, 1.0, 0.1], [1.0, 1.0, 0.1], [0.1, 0.1, 1.0]])
  np.testing.assert_array_equal(fl.cluster_weights(sim, np.array([0, 1, 2])), [2, 1, 1])


def test_class_balanced_coreset_takes_the_budget_from_each_class():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(4), [30, 20, 12, 2])
  features = rng.normal(size=(64, 5))
  rows, gamma = fl.class_balanced_coreset(features, labels, per_class=5)
  np.testing.assert_array_equal(np.bincount(labels[rows], minlength=4), [5, 5, 5, 2])
  # Within a class: the greedy set of that class, weights its cluster sizes.
  members = np.flatnonzero(labels == 0)
  sim = fl.similarity(features[members])
  np.testing.assert_array_equal(rows[:5], members[fl.lazy_greedy(sim, 5)])
  np.testing.assert_array_equal(gamma[:5], fl.cluster_weights(sim, fl.lazy_greedy(sim, 5)))
  assert gamma[:5].sum() == 30
  np.testing.assert_array_equal(gamma[-2:], [1, 1])  # A small class keeps all, weight 1.


def test_bad_budget_is_an_error_naming_it():
  with pytest.raises(ValueError, match="budget=0"):
    fl.lazy_greedy(np.eye(3), 0)
