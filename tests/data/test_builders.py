"""The offline tfds builders produce the data their sources define, in array_record format."""
import os

import mnist1d.data
import numpy as np
import sklearn.datasets
import tensorflow_datasets as tfds

from big_batch.data.builders import digits, mnist1d as mnist1d_builder


def read_all(source):
  records = source.__getitems__(range(len(source)))
  return (np.stack([r["input"] for r in records]), np.array([r["label"] for r in records]))


def sorted_rows(x):
  return x[np.lexsort(x.reshape(len(x), -1).T)]


def test_mnist1d_standard_split_equals_the_generator(data_dir):
  builder = mnist1d_builder.Mnist1d(config="standard", data_dir=data_dir,
                                    file_format="array_record")
  builder.download_and_prepare()
  assert any(f.endswith(".array_record-00000-of-00001") or ".array_record" in f
             for f in os.listdir(builder.data_dir))
  sources = builder.as_data_source()
  assert (len(sources["train"]), len(sources["test"])) == (4000, 1000)
  reference = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
  for split, key in (("train", "x"), ("test", "x_test")):
    x, y = read_all(sources[split])
    assert x.shape[1:] == (40,) and x.dtype == np.float32
    # tfds stores examples in its own order: compare as sets of rows, with labels attached.
    ours = np.concatenate([x, y[:, None]], 1)
    labels = reference["y" if split == "train" else "y_test"]
    theirs = np.concatenate([reference[key], labels[:, None]], 1).astype(np.float32)
    np.testing.assert_allclose(sorted_rows(ours), sorted_rows(theirs), rtol=1e-6)


def test_mnist1d_size_is_configurable(data_dir):
  config = mnist1d_builder.Mnist1dConfig(name="n500", num_samples=500)
  builder = mnist1d_builder.Mnist1d(config=config, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  sources = builder.as_data_source()
  assert (len(sources["train"]), len(sources["test"])) == (400, 100)


def test_digits_holds_all_of_scikit_learns_digits(data_dir):
  builder = digits.Digits(data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  sources = builder.as_data_source()
  x_train, y_train = read_all(sources["train"])
  x_test, y_test = read_all(sources["test"])
  assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
  reference = sklearn.datasets.load_digits()
  ours = np.concatenate([np.concatenate([x_train, x_test]).reshape(-1, 64),
                         np.concatenate([y_train, y_test])[:, None]], 1)
  theirs = np.concatenate([reference.images.reshape(-1, 64) / 16.0, reference.target[:, None]], 1)
  np.testing.assert_allclose(sorted_rows(ours), sorted_rows(theirs.astype(np.float32)), rtol=1e-6)
  assert builder.info.features["label"].num_classes == 10
  assert isinstance(builder.info.features["input"], tfds.features.Tensor)
