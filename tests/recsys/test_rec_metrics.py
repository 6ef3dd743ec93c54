"""Full-ranking HR@k, NDCG@k, MRR@10 (recsys/metrics.py) against hand-computed ranks, ties
included, and early stopping on logged validation metrics."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.recsys import metrics


def test_ranks_exclude_the_padding_id_and_count_ties_by_the_convention():
  # Item 0 is padding: its huge score must not count. Target 1 (0.5) ties with item 3.
  scores = jnp.asarray([[9.0, 0.5, 0.9, 0.5, 0.1], [9.0, 0.2, 0.3, 0.4, 0.9]])
  targets = jnp.asarray([1, 4])
  assert metrics.target_rank(scores, targets).tolist() == [1, 0]
  assert metrics.target_rank(scores, targets, ties="pessimistic").tolist() == [2, 0]


def test_hr_ndcg_mrr_by_hand():
  ranks = jnp.asarray([0, 4, 5, 9, 19, 20])
  out = {k: np.asarray(v) for k, v in metrics.ranking_metrics(ranks).items()}
  np.testing.assert_array_equal(out["hr@5"], [1, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(out["hr@10"], [1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(out["hr@20"], [1, 1, 1, 1, 1, 0])
  np.testing.assert_allclose(out["ndcg@5"], [1, 1 / math.log2(6), 0, 0, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(out["ndcg@10"], [1, 1 / math.log2(6), 1 / math.log2(7),
                                              1 / math.log2(11), 0, 0], rtol=1e-6)
  np.testing.assert_allclose(out["ndcg@20"][4], 1 / math.log2(21), rtol=1e-6)
  np.testing.assert_allclose(out["mrr@10"], [1, 1 / 5, 1 / 6, 1 / 10, 0, 0], rtol=1e-6)


def test_ranks_match_a_sort_over_random_scores_with_ties():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 6, size=(50, 30)).astype(np.float32)  # Many ties.
  targets = rng.integers(1, 30, 50)
  for ties in metrics.TIES:
    got = np.asarray(metrics.target_rank(jnp.asarray(scores), jnp.asarray(targets), ties))
    for row, target, rank in zip(scores, targets, got):
      others = [row[i] for i in range(1, 30) if i != target]
      above = sum(s > row[target] for s in others)
      tied = sum(s == row[target] for s in others)
      assert rank == (above if ties == "optimistic" else above + tied)


def test_early_stopping_keeps_the_best_before_patience_runs_out():
  records = [{"step": s, "v": v} for s, v in
             zip(range(1, 9), [0.1, 0.3, 0.2, 0.25, 0.2, 0.5, 0.6, 0.7])]
  assert metrics.early_stopping(records, "v", patience=3)["step"] == 2  # Stops at step 5.
  assert metrics.early_stopping(records, "v", patience=4)["step"] == 8
  assert metrics.early_stopping([{"step": 1}], "v", patience=1) is None


@pytest.mark.parametrize("k", metrics.KS)
def test_hr_is_monotone_in_k(k):
  ranks = jnp.arange(30)
  out = metrics.ranking_metrics(ranks)
  assert float(out[f"hr@{k}"].sum()) == k
