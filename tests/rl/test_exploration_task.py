"""configs/svd_exploration.py:quick through the trainer (the `rl_states` stream as the
negatives, the exploration evaluator), and the task's config checks."""
import json

import numpy as np
import pytest

from big_batch import checks, train
from big_batch.data import datasets
from big_batch.rl import tabular_envs
from big_batch.train.validate import validate
from conftest import load_config


def test_quick_config_trains_and_evaluates(data_dir, tmp_path):
  config = load_config("svd_exploration", "quick")
  config.data.data_dir = data_dir
  data = datasets.load(config.data)
  assert data.train.num_examples == tabular_envs.four_rooms().num_states
  rows = data.train.read(np.arange(data.train.num_examples))["state"]
  np.testing.assert_array_equal(np.sort(rows), np.arange(len(rows)))  # Each state once.
  summary = train.run(config, str(tmp_path / "run"))
  assert summary["final_step"] == 20
  final = summary["evals"]["exploration"]
  steps = 20 * config.exploration.num_envs * config.exploration.rollout
  assert 0 < final["coverage"] <= 1 and final["time_to_goal"] <= steps
  assert -1 <= final["count_spearman"] <= 1 and 0 <= final["energy_captured"] <= 1
  metrics = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  # Logged as the mean over each window of log_every = 10 updates of 16 env steps.
  logged = [m["train/env_steps"] for m in metrics if "train/env_steps" in m]
  np.testing.assert_allclose(logged, [16 * 5.5, 16 * 15.5])


@pytest.mark.parametrize("field, value, message", [
    ("exploration.bonus", "ucb", "config.exploration.bonus='ucb' is not one of"),
    ("exploration.gamma", 1.0, "config.exploration.gamma=1.0 must be in [0, 1)"),
    ("representation.encoder", "cnn", "config.representation.encoder='cnn' is not one of"),
    ("data.variant", "pong", "config.data.variant='pong' is not a variant of 'rl_states'"),
])
def test_bad_values_are_named(field, value, message):
  config = load_config("svd_exploration", "quick")
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(checks.ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")
                     .replace(")", r"\)")):
    validate(config, 8)
