"""Full-ranking metrics of next-item prediction (MCLRec's protocol: RecBole `eval_setting:
TO_LS,full`), and early stopping on a validation metric read back from a run's metrics.

Every item is ranked for every user; the padding id 0 is excluded (score -inf, as RecBole's
`scores[:, 0] = -inf`) and already-seen items are not (RecBole's SequentialFullDataLoader
passes `history_index=None`). With r the 0-based rank of the target (the number of items
scored above it; `ties='optimistic'` counts tied items below the target, 'pessimistic' above
it):

  HR@k   = [r < k]                   (RecBole's Recall@k with one target)
  NDCG@k = [r < k] / log2(r + 2)
  MRR@k  = [r < k] / (r + 1)         (MRR@10: the code's valid_metric)
"""
import jax.numpy as jnp
import numpy as np

KS = (5, 10, 20)
TIES = ("optimistic", "pessimistic")


def target_rank(scores, targets, ties="optimistic"):
  """The 0-based rank of each target among items 1..n of `scores` [B, n + 1] (id 0 excluded)."""
  scores = scores.at[:, 0].set(-jnp.inf)
  target = jnp.take_along_axis(scores, targets[:, None], axis=1)
  above = (scores > target).sum(1)
  if ties == "optimistic":
    return above
  tied = (scores == target).sum(1) - 1  # The target itself is not tied with itself.
  return above + tied


def ranking_metrics(rank, ks=KS):
  """{'hr@k', 'ndcg@k' for k in ks, 'mrr@10'} per example, from 0-based ranks [B]."""
  rank = rank.astype(jnp.float32)
  out = {}
  for k in ks:
    hit = (rank < k).astype(jnp.float32)
    out[f"hr@{k}"] = hit
    out[f"ndcg@{k}"] = hit / jnp.log2(rank + 2.0)
  out["mrr@10"] = (rank < 10).astype(jnp.float32) / (rank + 1.0)
  return out


def early_stopping(records: list[dict], key: str, patience: int) -> dict | None:
  """The record with the best `key` (largest) before `patience` evaluations without
  improvement, as RecBole's `early_stopping(stopping_step=patience)` would stop and keep the
  best model; None if no record has `key`. Training past the stop does not change earlier
  evaluations, so applying it to a finished run's metrics equals stopping the run."""
  best, since = None, 0
  for record in records:
    if key not in record:
      continue
    if best is None or record[key] > best[key]:
      best, since = record, 0
    else:
      since += 1
      if since >= patience:
        break
  return best

