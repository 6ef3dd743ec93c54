"""Regression data loaders and the jitted MSE fit of the active-learning loop."""
import jax
import numpy as np

from big_batch.selection import regression_data as rd
from big_batch.selection import regression_fit as rf


def test_bundled_and_synthetic_sets_have_the_documented_shapes():
  x, y = rd.diabetes()
  assert x.shape == (442, 10) and y.shape == (442, 1)
  x, y = rd.friedman(50, 1, seed=0)
  # Friedman-1: 10 sin(π x0 x1) + 20 (x2 − 0.5)² + 10 x3 + 5 x4 (noise 0).
  f = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3]
       + 5 * x[:, 4])
  np.testing.assert_allclose(y[:, 0], f, rtol=1e-5)
  x, y = rd.make_regression(30, 4, seed=0)
  assert x.shape == (30, 4) and y.shape == (30, 1)


def test_load_table_reads_whitespace_and_csv_files(tmp_path):
  data = np.arange(12.0).reshape(4, 3)
  (tmp_path / "a.txt").write_text("\n".join(" ".join(map(str, r)) for r in data) + "\n")
  (tmp_path / "b.csv").write_text("\n".join(",".join(map(str, r)) for r in data))
  for name in ("a.txt", "b.csv"):
    x, y = rd.load_table(str(tmp_path / name))
    np.testing.assert_array_equal(x, data[:, :2])
    np.testing.assert_array_equal(y[:, 0], data[:, 2])
  x, y = rd.load_table(str(tmp_path / "a.txt"), target_column=0)
  np.testing.assert_array_equal(y[:, 0], data[:, 0])


def test_standardize_uses_only_the_fit_rows():
  x = np.array([[0.0], [2.0], [100.0]], np.float32)
  xs, ys = rd.standardize(x, x, np.array([0, 1]))
  np.testing.assert_allclose(xs[:2, 0], [-1, 1], atol=1e-6)
  np.testing.assert_allclose(xs[2, 0], 99.0, rtol=1e-5)


def test_fit_learns_a_linear_target_on_the_labelled_rows_only():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3)).astype(np.float32)
  y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
  y[40:] = 100.0  # Unlabelled rows: must not be fitted.
  labelled = np.zeros(64, np.int32)
  labelled[:40] = np.arange(40)
  states = rf.fit(jax.random.split(jax.random.key(0), 2), x, y, labelled, 40, input_dim=3,
                  output_dim=1, hidden=(32,), steps=400, batch_size=20, lr=1e-2)
  pred = np.asarray(rf.predict(states, x, input_dim=3, output_dim=1, hidden=(32,)))
  assert pred.shape == (2, 64, 1)
  assert np.sqrt(np.mean((pred[:, :40] - y[None, :40]) ** 2)) < 0.1 * np.std(y[:40])
  assert np.all(np.abs(pred[:, 40:]) < 20)
  assert not np.allclose(pred[0], pred[1])  # Different initialisations.


def test_load_tfds_reads_a_big_batch_data_set(data_dir):
  import ml_collections
  from sklearn.datasets import load_digits
  config = ml_collections.ConfigDict({"name": "digits", "data_dir": data_dir})
  x, y = rd.load_tfds(config, split="train")
  assert x.ndim == 2 and y.shape == (len(x), 1)
  assert set(np.unique(y)) <= set(range(10))
  assert len(x) < len(load_digits().data) and x.shape[1] == 64
