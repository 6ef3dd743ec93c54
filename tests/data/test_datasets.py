"""Loading data sets by name: offline builders and the standard tfds path (cifar10)."""
import io

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.image_classification import cifar

from big_batch.data import datasets


def png(array):
  f = io.BytesIO()
  Image.fromarray(array).save(f, format="PNG")
  f.seek(0)
  return f


class SmallCifar10(cifar.Cifar10, skip_registration=True):
  """tfds's own cifar10 builder, fed generated images instead of the download."""
  name = "cifar10"

  def _split_generators(self, dl_manager):
    return {"train": self._examples(40, seed=0), "test": self._examples(12, seed=1)}

  def _examples(self, n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      # PNG bytes: tfds would otherwise need TensorFlow to encode the image.
      image = np.full((32, 32, 3), i * 6, np.uint8) + rng.integers(0, 3, (32, 32, 3), np.uint8)
      yield i, {"image": png(image), "label": i % 10, "id": f"{seed}_{i}"}


def config(**fields):
  return ml_collections.ConfigDict(fields)


def test_mnist1d_loads_in_memory_and_streaming_identically(data_dir):
  in_memory = datasets.load(config(name="mnist1d", data_dir=data_dir, in_memory=True))
  streaming = datasets.load(config(name="mnist1d", data_dir=data_dir, in_memory=False))
  assert (in_memory.num_classes, in_memory.input_shape) == (10, (40,))
  assert in_memory.train.num_examples == 4000 and in_memory.split("test").num_examples == 1000
  idx = np.array([5, 0, 3999, 17])
  a, b = in_memory.train.read(idx), streaming.train.read(idx)
  np.testing.assert_array_equal(a["input"], b["input"])
  np.testing.assert_array_equal(a["label"], b["label"])
  assert a["input"].dtype == np.float32 and a["label"].dtype == np.int32


def test_standard_tfds_data_set_prepared_in_data_dir(tmp_path):
  tfds.display_progress_bar(False)
  SmallCifar10(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  data = datasets.load(config(name="cifar10", data_dir=str(tmp_path), input_key="image"))
  assert (data.num_classes, data.input_shape) == (10, (32, 32, 3))
  assert (data.train.num_examples, data.split("test").num_examples) == (40, 12)
  batch = data.train.read(np.arange(40))
  assert batch["input"].dtype == np.float32
  assert 0.0 <= batch["input"].min() and batch["input"].max() <= 1.0  # uint8 scaled to [0, 1]
  # Each image is constant (i * 6) up to noise < 3: recover i and check its label i % 10.
  index = np.round(batch["input"].reshape(40, -1).min(1) * 255 / 6).astype(int)
  np.testing.assert_array_equal(batch["label"], index % 10)
  assert sorted(index) == list(range(40))


def test_unprepared_standard_data_set_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="'mnist' is not prepared in data_dir="):
    datasets.load(config(name="mnist", data_dir=str(tmp_path), input_key="image"))


def test_unknown_data_set_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="config.data.name='no_such_data'"):
    datasets.load(config(name="no_such_data", data_dir=str(tmp_path)))


def test_a_train_subset_trains_on_those_examples_only(data_dir, tmp_path):
  indices = np.array([7, 3, 3999, 0])
  np.save(tmp_path / "labelled.npy", indices)
  full = datasets.load(config(name="mnist1d", data_dir=data_dir))
  part = datasets.load(config(name="mnist1d", data_dir=data_dir,
                              train_subset=str(tmp_path / "labelled.npy")))
  assert part.train.num_examples == 4
  np.testing.assert_array_equal(part.train.read(np.array([2, 0]))["input"],
                                full.train.read(np.array([3999, 7]))["input"])
  assert part.split("test").num_examples == 1000  # Only the training split is restricted.
  for bad in (np.array([0, 0]), np.array([4000]), np.array([[1]]), np.array([0.5])):
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="must hold distinct integer indices in"):
      datasets.load(config(name="mnist1d", data_dir=data_dir,
                           train_subset=str(tmp_path / "bad.npy")))


def test_offline_generation_says_what_it_does_and_nothing_of_downloads(tmp_path, capfd):
  datasets.load(config(name="mnist1d", num_samples=300, data_dir=str(tmp_path), in_memory=True))
  out, err = capfd.readouterr()
  assert "Generating mnist1d (n300) offline into" in out
  assert "Downloading" not in out + err and "Unknown size" not in out + err
  datasets.load(config(name="mnist1d", num_samples=300, data_dir=str(tmp_path), in_memory=True))
  assert "Generating" not in capfd.readouterr().out  # Generated once, then reused.
