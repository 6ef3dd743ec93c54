"""Sequential-recommendation data as MCLRec prepares it (Qin et al., SIGIR 2023, Sec. 4.1).

A data set is one interaction sequence per user, in time order, in the authors' text format
(`dataset/<name>/<name>.txt` in QinHsiu/MCLRec): one line per user, "user item item ...".
RecBole's pipeline, which the paper's code runs on (`seq.yaml`), then

  * k-core filters (min_user_inter_num = min_item_inter_num = 5): users and items with fewer
    than k interactions are dropped, repeatedly, until none is left (`k_core`);
  * re-indexes items 1..n in order of first appearance, 0 being the padding id (`reindex`);
  * splits leave-one-out (`leave_one_out`) on the prefix-augmented sequence s_1..s_m: every
    prefix s_1..s_{i-1} -> s_i (i = 2..m) is an example, the last item s_m is the test target,
    s_{m-1} the validation target, and s_2..s_{m-2} the training targets; each history keeps
    its last `max_len` items, left-aligned and padded with 0.

`synthetic_sequences` is the offline source: a latent-topic Markov chain.
"""
from collections import Counter
from typing import Iterable

import numpy as np


def parse_lines(lines: Iterable[str]) -> list[list[int]]:
  """'user item item ...' lines -> one item list per user (in file order; users ignored)."""
  out = []
  for line in lines:
    fields = line.split()
    if len(fields) > 1:
      out.append([int(x) for x in fields[1:]])
  return out


def k_core(sequences: list[list[int]], k: int = 5) -> list[list[int]]:
  """Drops items with < k interactions and users with < k, repeatedly, until stable
  (RecBole `Dataset._filter_by_inter_num`, the k-core filter)."""
  seqs = [list(s) for s in sequences]
  while True:
    counts = Counter(i for s in seqs for i in s)
    kept = [[i for i in s if counts[i] >= k] for s in seqs]
    kept = [s for s in kept if len(s) >= k]
    if kept == seqs:
      return seqs
    seqs = kept


def reindex(sequences: list[list[int]]) -> tuple[list[list[int]], int]:
  """Items renumbered 1..n in order of first appearance; returns (sequences, n)."""
  ids = {}
  out = [[ids.setdefault(i, len(ids) + 1) for i in s] for s in sequences]
  return out, len(ids)


def _padded(history: list[int], max_len: int) -> np.ndarray:
  history = history[-max_len:]
  row = np.zeros(max_len, np.int32)
  row[:len(history)] = history
  return row


def leave_one_out(sequences: list[list[int]], max_len: int) -> dict[str, list[dict]]:
  """{'train', 'validation', 'test'} examples {'history' int32 [max_len], 'length', 'target',
  'user'} from each user's sequence s_1..s_m (module docstring): test s_1..s_{m-1} -> s_m,
  validation s_1..s_{m-2} -> s_{m-1}, training s_1..s_{i-1} -> s_i for i = 2..m-2."""
  out = {"train": [], "validation": [], "test": []}
  for user, s in enumerate(sequences):
    for i in range(1, len(s)):
      split = "test" if i == len(s) - 1 else "validation" if i == len(s) - 2 else "train"
      history = s[:i]
      out[split].append({"history": _padded(history, max_len),
                         "length": np.int32(min(len(history), max_len)),
                         "target": np.int32(s[i]), "user": np.int32(user)})
  return out


def synthetic_sequences(num_users: int, num_items: int, num_topics: int, seed: int,
                        min_len: int = 5, max_len: int = 50, mean_extra: float = 8.0,
                        stay: float = 0.8, follow: float = 0.6) -> list[list[int]]:
  """Sequences of a latent-topic Markov chain (data_selection.md Sec. 5.5).

  Items 1..num_items are split into `num_topics` contiguous blocks. A user has topic
  preferences theta_u ~ Dirichlet(0.3) and a length min_len + Geometric (mean `mean_extra`),
  capped at max_len. The topic z_t stays z_{t-1} with probability `stay`, else is drawn from
  theta_u. Within its topic, the next item is with probability `follow` one of the 3 items
  after the previous one (a sequential pattern, when the topic did not change), otherwise
  drawn by a Zipf(1) popularity over the topic's items.
  """
  rng = np.random.default_rng(seed)
  blocks = np.array_split(np.arange(1, num_items + 1), num_topics)
  popularity = [1.0 / np.arange(1, len(b) + 1) for b in blocks]
  popularity = [p / p.sum() for p in popularity]
  out = []
  for _ in range(num_users):
    theta = rng.dirichlet(np.full(num_topics, 0.3))
    length = min(max_len, min_len + rng.geometric(1.0 / (1.0 + mean_extra)) - 1)
    z, position, seq = rng.choice(num_topics, p=theta), None, []
    for _ in range(length):
      if position is not None and rng.random() >= stay:
        z, position = rng.choice(num_topics, p=theta), None
      block = blocks[z]
      if position is not None and rng.random() < follow:
        position = (position + rng.integers(1, 4)) % len(block)
      else:
        position = rng.choice(len(block), p=popularity[z])
      seq.append(int(block[position]))
    out.append(seq)
  return out
