"""Data partitions (decentralized/partition.py): the label split {i, 9-i} and i.i.d."""
import numpy as np
import pytest

from big_batch.decentralized import partition


def test_label_split_gives_worker_i_classes_i_and_9_minus_i():
  labels = np.random.default_rng(0).integers(0, 10, 2000)
  parts = partition.partition(labels, 5, "label", 10)
  for i, part in enumerate(parts):
    assert set(labels[part].tolist()) == {i, 9 - i}
  assert sorted(np.concatenate(parts).tolist()) == list(range(2000))


def test_iid_split_is_a_seeded_partition_of_near_equal_parts():
  labels = np.zeros(103, np.int64)
  parts = partition.partition(labels, 4, "iid", 10, seed=3)
  assert sorted(len(p) for p in parts) == [25, 26, 26, 26]
  assert sorted(np.concatenate(parts).tolist()) == list(range(103))
  again = partition.partition(labels, 4, "iid", 10, seed=3)
  assert all((a == b).all() for a, b in zip(parts, again))


def test_sample_draws_each_workers_rows_from_its_own_part():
  labels = np.repeat(np.arange(10), 30)
  parts = partition.partition(labels, 5, "label", 10)
  candidates = np.random.default_rng(1).permutation(300)[:40]
  rows = partition.sample(parts, candidates, 8)
  for i in range(5):
    assert set(labels[rows[8 * i:8 * i + 8]].tolist()) <= {i, 9 - i}
    np.testing.assert_array_equal(rows[8 * i:8 * i + 8],
                                  parts[i][candidates[8 * i:8 * i + 8] % len(parts[i])])


def test_label_split_needs_two_classes_per_worker():
  with pytest.raises(ValueError, match="n=6"):
    partition.partition(np.arange(10), 6, "label", 10)
  with pytest.raises(ValueError, match="'dirichlet'"):
    partition.partition(np.arange(10), 2, "dirichlet", 10)
