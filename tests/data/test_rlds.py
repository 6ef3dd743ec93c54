"""RLDS episodes as transitions (src/big_batch/data/rlds.py), and tfds data sets whose builder
cannot run here read from their prepared directory (data/datasets.py)."""
import os
import shutil

import ml_collections
import numpy as np
import pytest

from big_batch.data import datasets, rlds


def _step(t, last=False, terminal=False):
  return {"observation": np.full(2, t, np.float32), "action": np.full(1, 10 + t, np.float32),
          "reward": np.float32(100 + t), "discount": np.float32(0.0 if terminal else 1.0),
          "is_first": t == 0, "is_last": last, "is_terminal": terminal}


def test_an_episode_of_t_plus_1_steps_gives_t_transitions_and_its_terminal_flag():
  steps = [_step(0), _step(1), _step(2, last=True, terminal=True)]
  out = rlds.episode_transitions(steps)
  np.testing.assert_array_equal(out["observation"][:, 0], [0, 1])
  np.testing.assert_array_equal(out["next_observation"][:, 0], [1, 2])
  np.testing.assert_array_equal(out["action"][:, 0], [10, 11])
  np.testing.assert_array_equal(out["reward"], [100, 101])
  np.testing.assert_array_equal(out["terminal"], [0, 1])  # Only into the terminal state.


def test_a_time_limit_cut_is_not_terminal_and_episodes_concatenate_in_order():
  episodes = [{"steps": [_step(0), _step(1, last=True)]},
              {"steps": [_step(5), _step(6), _step(7, last=True, terminal=True)]}]
  out = rlds.transitions(episodes)
  np.testing.assert_array_equal(out["observation"][:, 0], [0, 5, 6])
  np.testing.assert_array_equal(out["terminal"], [0, 0, 1])


def test_an_episode_must_end_with_its_only_last_step():
  with pytest.raises(ValueError, match="must end with its only is_last step"):
    rlds.episode_transitions([_step(0, last=True), _step(1, last=True)])
  with pytest.raises(ValueError, match="must end with its only is_last step"):
    rlds.episode_transitions([_step(0), _step(1)])


def test_a_prepared_d4rl_mujoco_data_set_loads_as_transitions(tmp_path):
  """tfds' d4rl_mujoco builders declare TensorFlow dtypes, so they cannot run without
  TensorFlow; a prepared copy (here: episodes this test writes in their RLDS layout, under
  their name, config and version) is read from its directory."""
  from big_batch.rl import offline_builder  # noqa: PLC0415
  source_dir = tmp_path / "source"
  builder = offline_builder.OfflineRL(config="pendulum-quick-random", data_dir=str(source_dir),
                                      file_format="array_record")
  builder.download_and_prepare()
  prepared = tmp_path / "data" / "d4rl_mujoco_halfcheetah" / "v2-medium" / "1.2.0"
  shutil.copytree(builder.data_dir, prepared)
  config = ml_collections.ConfigDict(dict(name="d4rl_mujoco_halfcheetah/v2-medium",
                                          data_dir=str(tmp_path / "data"), transitions=True))
  data = datasets.load(config)
  episodes = builder.as_data_source()["train"]
  expected = rlds.transitions(episodes)
  assert data.train.num_examples == len(expected["reward"])
  rows = data.train.read(np.arange(0, data.train.num_examples, 7))
  for key in rlds.KEYS:
    np.testing.assert_array_equal(rows[key], expected[key][::7])
  assert datasets.prepared_directory("d4rl_mujoco_halfcheetah/v2-medium",
                                     str(tmp_path / "data")) == str(prepared)
  assert datasets.prepared_directory("d4rl_mujoco_hopper/v2-medium", str(tmp_path)) is None
  missing = ml_collections.ConfigDict(dict(name="d4rl_mujoco_hopper/v2-medium",
                                           data_dir=str(tmp_path / "data"), transitions=True))
  with pytest.raises(FileNotFoundError, match="is not prepared in data_dir"):
    datasets.load(missing)
  assert os.path.exists(prepared / "dataset_info.json")
