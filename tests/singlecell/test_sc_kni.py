"""KNI (Diaz-Mejia et al. 2025, the authors' `calc_kni_score`) against a brute-force reading of
the definition, and on embeddings built to score about 1, exactly 0, and low."""
import collections

import numpy as np
import pytest

from big_batch.singlecell import kni


def brute_force_kni(z, study, cell_type, k, max_prop=0.8):
  """The definition cell by cell: IQR scaling, k nearest (self included), diverse if fewer
  than max_prop k share the study, majority label of the other studies' neighbours."""
  z = np.array(z, np.float64)
  for d in range(z.shape[1]):
    col = z[:, d] - z[:, d].mean()
    q1, q3 = np.percentile(col, 25), np.percentile(col, 75)
    z[:, d] = 0.0 if q3 == q1 else col / (q3 - q1)
  hits = correct = same_total = 0
  for i in range(len(z)):
    nearest = np.argsort(np.linalg.norm(z - z[i], axis=1), kind="stable")[:k]
    votes = collections.Counter(cell_type[nearest].tolist())
    best = max(votes.values())
    correct += min(t for t, v in votes.items() if v == best) == cell_type[i]
    others = [j for j in nearest if study[j] != study[i]]
    same_total += k - len(others)
    if k - len(others) < max_prop * k:
      votes = collections.Counter(cell_type[others].tolist())
      best = max(votes.values())
      hits += min(t for t, v in votes.items() if v == best) == cell_type[i]
  n = len(z)
  return hits / n, correct / n, same_total / (n * k)


@pytest.mark.parametrize("seed,k,max_prop", [(0, 10, 0.8), (1, 25, 0.8), (2, 7, 0.5)])
def test_kni_equals_a_brute_force_reading_of_the_definition(seed, k, max_prop):
  rng = np.random.default_rng(seed)
  n = 150
  study = rng.integers(0, 3, n)
  cell_type = rng.integers(0, 4, n)
  # Partly structured so every branch (diverse or not, right or wrong) occurs.
  z = rng.normal(size=(n, 5)) + np.stack([study, cell_type, study * cell_type, 0 * study,
                                          rng.normal(size=n)], 1) * [1.0, 2.0, 0.5, 0.0, 1.0]
  got = kni.kni_score(z, study, cell_type, k=k, max_prop_same_batch=max_prop)
  want_kni, want_acc, want_same = brute_force_kni(z, study, cell_type, k, max_prop)
  assert 0 < want_kni < 1 and 0 < want_acc < 1
  assert got["kni"] == pytest.approx(want_kni, abs=1e-12)
  assert got["acc_knn"] == pytest.approx(want_acc, abs=1e-12)
  assert got["mean_pct_same_batch_in_knn"] == pytest.approx(want_same, abs=1e-12)


def clusters(rng, cell_type, spread=0.1):
  """Cell types at the corners of a simplex, each cell jittered around its type's corner."""
  centres = 10.0 * np.eye(cell_type.max() + 1)
  return centres[cell_type] + spread * rng.normal(size=(len(cell_type), centres.shape[1]))


def test_perfectly_mixed_studies_with_correct_labels_score_about_one():
  rng = np.random.default_rng(0)
  cell_type = np.repeat(np.arange(4), 150)
  study = rng.integers(0, 3, len(cell_type))  # Studies scattered at random inside each type.
  out = kni.kni_score(clusters(rng, cell_type), study, cell_type, k=50)
  assert out["kni"] > 0.99 and out["acc_knn"] == 1.0
  assert out["pct_cells_with_diverse_knn"] > 0.99
  assert out["mean_pct_same_batch_in_knn"] == pytest.approx(1 / 3, abs=0.05)


def test_study_segregated_embeddings_score_zero_even_with_perfect_cell_types():
  rng = np.random.default_rng(1)
  cell_type = np.tile(np.repeat(np.arange(3), 100), 2)
  study = np.repeat([0, 1], 300)
  z = clusters(rng, cell_type)
  z = np.concatenate([z, 100.0 * study[:, None]], 1)  # Every study in a region of its own.
  out = kni.kni_score(z, study, cell_type, k=50)
  assert out["kni"] == 0.0 and out["pct_cells_with_diverse_knn"] == 0.0
  assert out["acc_knn"] == 1.0 and out["mean_pct_same_batch_in_knn"] == 1.0


def test_mixed_studies_with_inconsistent_labels_score_low():
  rng = np.random.default_rng(2)
  truth = np.repeat(np.arange(4), 150)
  study = rng.integers(0, 3, len(truth))
  # Each study names the same clusters differently: labels agree within a study only.
  labels = (truth + study) % 4
  out = kni.kni_score(clusters(rng, truth), study, labels, k=50)
  assert out["kni"] < 0.05 and out["pct_cells_with_diverse_knn"] > 0.99


def test_robust_scale_centres_divides_by_the_iqr_and_zeroes_constant_dimensions():
  rng = np.random.default_rng(3)
  z = np.stack([rng.normal(5.0, 3.0, 101), np.full(101, 7.0)], 1)
  scaled = kni.robust_scale(z)
  q1, q3 = np.percentile(z[:, 0], [25, 75])
  np.testing.assert_allclose(scaled[:, 0], (z[:, 0] - z[:, 0].mean()) / (q3 - q1))
  assert (scaled[:, 1] == 0).all()


def test_pca_baseline_matches_sklearn_up_to_sign():
  from sklearn.decomposition import PCA
  rng = np.random.default_rng(4)
  counts = rng.poisson(3.0, (80, 20)).astype(np.float32)
  ours = kni.pca_embedding(counts, 3)
  c = counts.astype(np.float64)
  x = np.log1p(1e4 * c / (c.sum(1, keepdims=True) + 1e-6))
  theirs = PCA(3, svd_solver="full").fit_transform(x)
  np.testing.assert_allclose(np.abs(ours), np.abs(theirs), rtol=1e-6, atol=1e-8)


def test_too_few_cells_for_k_is_an_error():
  with pytest.raises(ValueError, match="more than k=50 cells"):
    kni.kni_score(np.zeros((50, 2)), np.zeros(50, int), np.zeros(50, int), k=50)
