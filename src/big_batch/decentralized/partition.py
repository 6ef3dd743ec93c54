"""Which training examples each worker owns: the label split of Yan et al. 2023, or i.i.d.

  label  worker i owns the examples of classes {i, C-1-i} (the authors' `--data_divide
         label`; 5 workers and 10 classes cover every class once). Generally class c
         belongs to worker min(c, C-1-c) mod n, which needs n <= C / 2.
  iid    a seeded permutation cut into n near-equal parts.

`sample(parts, candidates, per_worker)` turns the trainer's seeded stream indices into each
worker's rows: worker i's j-th row is parts[i][c mod |parts[i]|] for its j-th candidate c, so
the rows are a pure function of the stream position (resumes alike) and cycle through each
worker's own examples.
"""
import numpy as np

PARTITIONS = ("label", "iid")


def partition(labels: np.ndarray, n: int, kind: str, num_classes: int, seed: int = 0):
  """A list of n index arrays into the training split (Yan et al. 2023, Sec. 5)."""
  labels = np.asarray(labels)
  if kind == "label":
    if n > num_classes // 2:
      raise ValueError(f"partition='label' gives each of n workers two classes: n={n} exceeds "
                       f"num_classes / 2 = {num_classes // 2}")
    owner = np.minimum(labels, num_classes - 1 - labels) % n
    return [np.flatnonzero(owner == i) for i in range(n)]
  if kind == "iid":
    order = np.random.default_rng(seed).permutation(len(labels))
    return list(np.array_split(order, n))
  raise ValueError(f"partition={kind!r} is not one of {PARTITIONS}")


def sample(parts, candidates: np.ndarray, per_worker: int) -> np.ndarray:
  """Rows [n * per_worker], worker-major: worker i's rows come from parts[i]."""
  candidates = np.asarray(candidates)
  return np.concatenate([part[candidates[i * per_worker:(i + 1) * per_worker] % len(part)]
                         for i, part in enumerate(parts)])
