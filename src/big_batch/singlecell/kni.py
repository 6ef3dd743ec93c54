"""The K-Neighbors Intersection (KNI) score and kNN cell-type accuracy of an embedding.

Diaz-Mejia et al. 2025 ("Benchmarking and optimizing organism wide single-cell RNA alignment
methods"), KNI = (1/n) sum_c 1[diverse(c) and L(c) = t_c], as their code computes it
(PhenomicAI/bascvi, `utils/utils.py::calc_kni_score`):

  1. each embedding dimension is centred and divided by its inter-quartile range (0 if the IQR
     is 0);
  2. the k Euclidean nearest neighbours of every cell among all cells, the cell itself
     included (sklearn's kneighbors on the fitted set);
  3. a neighbourhood is diverse if fewer than max_prop_same_batch * k neighbours share the
     cell's study;
  4. in a diverse neighbourhood L(c) is the majority cell type of the neighbours from other
     studies (ties: the smallest label); other cells count as failures.

acc_knn is the majority vote over all k neighbours (the cell included). Labels here are
integer codes; drop unknown cells before calling.
"""
import numpy as np
from sklearn.neighbors import NearestNeighbors


def robust_scale(embedding: np.ndarray) -> np.ndarray:
  """(z - mean z) / (Q75(z) - Q25(z)) per dimension, 0 where the IQR is 0 (step 1)."""
  z = np.asarray(embedding, np.float64)
  z = z - z.mean(0)
  q25, q75 = np.quantile(z, [0.25, 0.75], axis=0)
  iqr = q75 - q25
  return np.where(iqr > 0, z / np.where(iqr > 0, iqr, 1.0), 0.0)


def _majority(labels: np.ndarray, mask: np.ndarray, num_labels: int) -> np.ndarray:
  """Per row, the most frequent label among the masked entries (ties: the smallest)."""
  counts = np.zeros((labels.shape[0], num_labels), np.int64)
  np.add.at(counts, (np.repeat(np.arange(labels.shape[0]), labels.shape[1]), labels.ravel()),
            mask.ravel().astype(np.int64))
  return counts.argmax(1)


def kni_score(embedding: np.ndarray, study: np.ndarray, cell_type: np.ndarray, k: int = 50,
              max_prop_same_batch: float = 0.8) -> dict:
  """{'kni', 'acc_knn', 'mean_pct_same_batch_in_knn', 'pct_cells_with_diverse_knn'} of the
  module docstring (Diaz-Mejia et al. 2025; `calc_kni_score`)."""
  study, cell_type = np.asarray(study), np.asarray(cell_type)
  if len(study) <= k:
    raise ValueError(f"kni_score needs more than k={k} cells, got {len(study)}")
  z = robust_scale(embedding)
  neighbours = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z, return_distance=False)
  knn_type, knn_study = cell_type[neighbours], study[neighbours]
  other_study = knn_study != study[:, None]
  num_same = k - other_study.sum(1)
  diverse = num_same < max_prop_same_batch * k
  num_labels = int(cell_type.max()) + 1
  by_all = _majority(knn_type, np.ones_like(other_study), num_labels)
  by_others = _majority(knn_type, other_study, num_labels)
  return {"kni": float(np.mean(diverse & (by_others == cell_type))),
          "acc_knn": float(np.mean(by_all == cell_type)),
          "mean_pct_same_batch_in_knn": float(num_same.mean() / k),
          "pct_cells_with_diverse_knn": float(diverse.mean())}


def pca_embedding(counts: np.ndarray, num_components: int = 10) -> np.ndarray:
  """The naive baseline: PCA of log(1 + 10^4 x / sum_g x_g), the normalised log counts."""
  x = log_normalise(counts)
  x = x - x.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  return x @ vt[:num_components].T


def log_normalise(counts: np.ndarray) -> np.ndarray:
  """log(1 + 10^4 x_g / sum_g x_g), the encoder input of BA-scVI (and Scanpy's default)."""
  counts = np.asarray(counts, np.float64)
  return np.log1p(1e4 * counts / (counts.sum(1, keepdims=True) + 1e-6))
