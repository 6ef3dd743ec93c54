"""scikit-learn's handwritten digits (8x8, 1797 images) as a tfds builder, array_record format.

Pixels are scaled from 0..16 to [0, 1]; a fixed permutation (seed 0) puts 1437 images in
train and 360 in test (80/20).
"""
import numpy as np
import sklearn.datasets
import tensorflow_datasets as tfds

NUM_TRAIN = 1437


class Digits(tfds.core.GeneratorBasedBuilder):
  """The UCI optical digits that scikit-learn ships, as [8, 8, 1] float32 images."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "input": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("input", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Shipped with scikit-learn: nothing to download.
    digits = sklearn.datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = (digits.images[order] / 16.0).astype(np.float32)[..., None]
    labels = digits.target[order]
    return {
        "train": self._generate_examples(images[:NUM_TRAIN], labels[:NUM_TRAIN]),
        "test": self._generate_examples(images[NUM_TRAIN:], labels[NUM_TRAIN:]),
    }

  def _generate_examples(self, images, labels):
    for i, (x, y) in enumerate(zip(images, labels)):
      yield i, {"input": x, "label": int(y)}
