"""Offline RL data sets generated on this machine, as a tfds builder (array_record, RLDS).

Variants `<env>-<kind>` for env in pendulum, halfcheetah, hopper, walker2d and kind in random,
medium, medium-replay, expert (behaviour.py: online SAC in gymnasium, D4RL's recipe at this
machine's budget, `behaviour.BUDGETS`), and `<env>-quick-<kind>` at a budget of a minute or
two (smoke tests, `:quick` configs; their policies are weak, `random` takes seconds). Each example is an RLDS episode
{'steps': [{observation, action, reward, discount, is_first, is_last, is_terminal}]}, the
layout of tfds' `d4rl_mujoco_*`; `config.data.transitions = True` reads either as
transitions (data/rlds.py). The online run lives in
`<data_dir>/offline_rl_generation/<env>-seed<seed>-<budget key>/`, shared by the kinds of one
env and resumed if generation stops; `info.metadata` records which policy made the data and
its return.
"""
import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from big_batch.rl import behaviour

OBSERVATION_DIMS = {"pendulum": 3, "halfcheetah": 17, "hopper": 11, "walker2d": 17}
ACTION_DIMS = {"pendulum": 1, "halfcheetah": 6, "hopper": 3, "walker2d": 6}


@dataclasses.dataclass
class OfflineRLConfig(tfds.core.BuilderConfig):
  env: str = "pendulum"
  kind: str = "medium"
  quick: bool = False
  seed: int = 0

  @property
  def budget(self) -> behaviour.Budget:
    return behaviour.QUICK if self.quick else behaviour.BUDGETS[self.env]


def _configs():
  configs = []
  for env in behaviour.ENV_IDS:
    for kind in behaviour.KINDS:
      configs.append(OfflineRLConfig(name=f"{env}-{kind}", env=env, kind=kind))
  for env in behaviour.ENV_IDS:
    for kind in behaviour.KINDS:
      configs.append(OfflineRLConfig(name=f"{env}-quick-{kind}", env=env, kind=kind,
                                     quick=True))
  return configs


class OfflineRL(tfds.core.GeneratorBasedBuilder):
  """Episodes of SAC behaviour policies (random / medium / medium-replay / expert)."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = _configs()

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "steps": tfds.features.Dataset({
                "observation": tfds.features.Tensor(shape=(OBSERVATION_DIMS[config.env],),
                                                    dtype=np.float32),
                "action": tfds.features.Tensor(shape=(ACTION_DIMS[config.env],),
                                               dtype=np.float32),
                "reward": np.float32, "discount": np.float32, "is_first": np.bool_,
                "is_last": np.bool_, "is_terminal": np.bool_}),
        }),
        metadata=tfds.core.MetadataDict(),
        homepage="https://github.com/Farama-Foundation/D4RL",
        disable_shuffling=True,  # Episodes in the order they were recorded.
    )

  def generation_directory(self) -> str:
    config = self.builder_config
    return os.path.join(self._data_dir_root, "offline_rl_generation",
                        f"{config.env}-seed{config.seed}-{config.budget.key()}")

  def _split_generators(self, dl_manager):
    del dl_manager  # Generated offline: nothing to download.
    config = self.builder_config
    episodes, metadata = behaviour.generate(config.env, config.kind, config.budget, config.seed,
                                            self.generation_directory())
    returns = [float(sum(s["reward"] for s in e["steps"])) for e in episodes]
    self.info.metadata.update({
        "env_id": behaviour.ENV_IDS[config.env], "kind": config.kind, **metadata,
        "episodes": len(episodes), "transitions": sum(len(e["steps"]) - 1 for e in episodes),
        "mean_episode_return": float(np.mean(returns))})
    return {"train": self._generate_examples(episodes)}

  def _generate_examples(self, episodes):
    for i, episode in enumerate(episodes):
      yield i, episode
