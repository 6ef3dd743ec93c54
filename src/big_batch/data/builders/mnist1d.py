"""MNIST-1D (Greydanus 2020) as a tfds builder in array_record format, generated offline.

The `standard` config reproduces the paper's 4000/1000 split (mnist1d's default arguments,
seed 42); `large` generates 50000 examples (40000/10000) for batch-size sweeps. Any size is
available through `Mnist1dConfig(name=..., num_samples=...)`.
"""
import dataclasses

import mnist1d.data
import numpy as np
import tensorflow_datasets as tfds

NUM_CLASSES = 10
LENGTH = 40


@dataclasses.dataclass
class Mnist1dConfig(tfds.core.BuilderConfig):
  num_samples: int = 5000  # 80% train, 20% test, as mnist1d's get_dataset_args().


class Mnist1d(tfds.core.GeneratorBasedBuilder):
  """MNIST-1D: 40-sample 1-D signals of the ten digit templates under random transforms."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      Mnist1dConfig(name="standard", num_samples=5000),
      Mnist1dConfig(name="large", num_samples=50000),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "input": tfds.features.Tensor(shape=(LENGTH,), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("input", "label"),
        homepage="https://github.com/greydanus/mnist1d",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Generated offline: nothing to download.
    args = mnist1d.data.get_dataset_args()
    args.num_samples = self.builder_config.num_samples
    data = mnist1d.data.make_dataset(args)
    return {
        "train": self._generate_examples(data["x"], data["y"]),
        "test": self._generate_examples(data["x_test"], data["y_test"]),
    }

  def _generate_examples(self, inputs, labels):
    for i, (x, y) in enumerate(zip(inputs, labels)):
      yield i, {"input": x.astype(np.float32), "label": int(y)}
