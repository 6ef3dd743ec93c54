"""Regression data for batch active learning, as float32 (x, y) arrays, y of shape (n, 1).

scikit-learn's bundled diabetes set and its offline Friedman and make_regression generators
(bmdal's `fried` benchmark set is Friedman-1; Holzmüller et al. 2023, §4.2), mnist1d as ±1
one-hot regression (Hemachandra et al. 2023 train classification as MSE regression), a UCI-style
text table from a path, and any data set `big_batch.data.datasets.load` knows. `standardize`
applies the benchmark's preprocessing (x by train+pool statistics, y standardised).
"""
import numpy as np
from sklearn import datasets as skd


def _pair(x, y):
  y = np.asarray(y, np.float32)
  return np.asarray(x, np.float32), y.reshape(len(y), -1)


def diabetes():
  """sklearn `load_diabetes`: 442 × 10."""
  d = skd.load_diabetes()
  return _pair(d.data, d.target)


def friedman(n: int, which: int = 1, noise: float = 0.0, seed: int = 0):
  """sklearn `make_friedman{1,2,3}` (Friedman 1991); Friedman-1 has 10 inputs, 5 relevant."""
  fn = {1: skd.make_friedman1, 2: skd.make_friedman2, 3: skd.make_friedman3}[which]
  return _pair(*fn(n_samples=n, noise=noise, random_state=seed))


def make_regression(n: int, num_features: int = 10, noise: float = 0.1, seed: int = 0):
  """sklearn `make_regression`: a random linear model."""
  return _pair(*skd.make_regression(n_samples=n, n_features=num_features, noise=noise,
                                    random_state=seed))


def mnist1d_regression(num_samples: int = 5000, seed: int = 42):
  """mnist1d (train and test joined) with ±1 one-hot targets, y of shape (n, 10)."""
  from mnist1d.data import get_dataset_args, make_dataset
  args = get_dataset_args()
  args.num_samples, args.seed = num_samples, seed
  d = make_dataset(args)
  x = np.concatenate([d["x"], d["x_test"]])
  labels = np.concatenate([d["y"], d["y_test"]])
  return _pair(x, 2.0 * np.eye(10)[labels] - 1.0)


def load_table(path, target_column: int = -1):
  """A whitespace- or comma-separated numeric table (the UCI text files): one column is y."""
  with open(path) as f:
    text = f.read()
  rows = [line.replace(",", " ").split() for line in text.splitlines() if line.strip()]
  data = np.array(rows, np.float64)
  y = data[:, target_column]
  return _pair(np.delete(data, target_column % data.shape[1], 1), y)


def load_tfds(config, split: str = "train", target_key: str = "label"):
  """Any data set of `big_batch.data.datasets.load(config)`: inputs flattened, y = the label."""
  from big_batch.data import datasets
  s = datasets.load(config).split(split)
  records = s.read(np.arange(s.num_examples))
  x = records.get("input", records.get("image"))
  return _pair(np.reshape(x, (len(x), -1)), records[target_key])


def standardize(x, y, fit_rows):
  """Standardise x and y by the mean and std of the rows `fit_rows` (train + pool)."""
  mx, sx = x[fit_rows].mean(0), x[fit_rows].std(0) + 1e-8
  my, sy = y[fit_rows].mean(0), y[fit_rows].std(0) + 1e-8
  return (x - mx) / sx, (y - my) / sy
