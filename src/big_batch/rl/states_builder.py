"""The state set of a tabular environment as a tfds builder (array_record): rows
{'state': int32}, one per state, for the trainer's stream.

The exploring task (exploration_task.py) draws its negative states u~ ~ rho of the spectral
objective (svd_representation.py) from this stream: epochs of seeded permutations of the
states, so each row is uniform over the states and `config.batch.size` is the mini-batch of
negatives. Variants are the environments of `tabular_envs.make` ('four_rooms',
'deep_sea_<n>', 'minigrid_<id>'); 'train' holds every state.
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from big_batch.rl import tabular_envs

VARIANTS = ("four_rooms", "deep_sea_10", "deep_sea_16", "deep_sea_20", "minigrid_Empty-8x8",
            "minigrid_FourRooms")


@dataclasses.dataclass
class StatesConfig(tfds.core.BuilderConfig):
  environment: str = "four_rooms"


class RlStates(tfds.core.GeneratorBasedBuilder):
  """The states 0..S-1 of one environment."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [StatesConfig(name=v, environment=v) for v in VARIANTS]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        "state": tfds.features.Tensor(shape=(), dtype=np.int32)}))

  def _split_generators(self, dl_manager):
    del dl_manager  # Generated from the environment's table: nothing to download.
    num_states = tabular_envs.make(self.builder_config.environment).num_states
    return {"train": self._generate_examples(num_states)}

  def _generate_examples(self, num_states):
    for s in range(num_states):
      yield s, {"state": np.int32(s)}
