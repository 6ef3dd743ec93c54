"""The q_ensemble task through the trainer (src/big_batch/rl/offline_task.py): resume exact,
the ensemble sharded over a mesh axis equals it replicated, a short Pendulum run beats the
random policy, and bad settings are refused by name."""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from big_batch import checks, configs, train
from big_batch.rl import evaluate
from big_batch.train.validate import validate
from conftest import run_preempted_at


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["train/loss"] for r in map(json.loads, f) if "train/loss" in r}


def _state(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return jax.tree.map(np.asarray, ocp.StandardCheckpointer().restore(path))


def _quick(name, data_dir):
  config = configs.get(f"offline_rl.{name}", "quick")
  config.data.data_dir = data_dir
  config.log_every = 1
  return config


def test_edac_resumed_after_preemption_is_the_same_run_bitwise(data_dir, tmp_path, monkeypatch,
                                                               compilation_cache_dir):
  config = _quick("edac", data_dir)
  assert config.rl.eta > 0
  whole = train.run(config, str(tmp_path / "whole"))
  assert whole["complete"] and np.isfinite(whole["train"]["diversity"])
  stopped = run_preempted_at(config, tmp_path / "resumed", 7, monkeypatch)
  assert stopped["preempted"] and stopped["final_step"] == 7
  resumed = train.run(config, str(tmp_path / "resumed"))
  assert resumed["final_step"] == config.num_steps
  assert _losses(tmp_path / "resumed") == _losses(tmp_path / "whole")
  jax.tree.map(np.testing.assert_array_equal, _state(tmp_path / "resumed", config.num_steps),
               _state(tmp_path / "whole", config.num_steps))
  # K updates per trainer step, and the rows each step trains on are K batches of B.
  assert whole["train"]["updates"] == config.num_steps * config.rl.updates_per_step
  assert whole["train"]["batch_size"] == config.rl.updates_per_step * config.batch.size


def test_the_ensemble_sharded_over_a_mesh_axis_equals_it_replicated(data_dir, tmp_path,
                                                                    compilation_cache_dir):
  config = _quick("lb_sac", data_dir)
  config.num_steps, config.evals = 6, {}
  config.mesh = dict(data=4, fsdp=2, seq=1)
  replicated = train.run(config, str(tmp_path / "replicated"))
  config.rl.ensemble_axis = "data"
  sharded = train.run(config, str(tmp_path / "sharded"))
  assert replicated["complete"] and sharded["complete"]
  one, other = _losses(tmp_path / "replicated"), _losses(tmp_path / "sharded")
  assert sorted(one) == sorted(other)
  for step in one:
    np.testing.assert_allclose(other[step], one[step], rtol=1e-4, err_msg=f"step {step}")


def test_a_short_pendulum_run_beats_the_random_policy(data_dir, tmp_path):
  """3000 updates of SAC-N (N = 2, lr 1e-3, batch 128) on 2000 random transitions."""
  config = _quick("sac_n", data_dir)
  config.rl.num_critics, config.rl.hidden, config.rl.updates_per_step = 2, 64, 15
  for name in ("actor", "critic", "alpha"):
    config.optimizers[name].learning_rate = 1e-3
  config.batch.size, config.num_steps, config.log_every = 128, 200, 50
  config.evals = dict(env=dict(kind="rollout", every=200, episodes=10, seed=0, ood_states=256))
  config.checkpoint_every = 200
  summary = train.run(config, str(tmp_path / "run"))
  rng = np.random.default_rng(0)
  random_returns = evaluate.rollout(lambda o: rng.uniform(-2, 2, (len(o), 1)), "Pendulum-v1",
                                    10, 0)
  random_score = float(evaluate.normalized_score("pendulum", random_returns).mean())
  score = summary["evals"]["env"]["normalized_score"]
  assert score > random_score + 30, (score, random_score)
  assert summary["evals"]["env"]["q_random_std"] > 0


def test_edac_on_one_dimensional_actions_is_refused(data_dir, tmp_path):
  config = _quick("sac_n", data_dir)  # Pendulum: one action dimension.
  config.rl.eta = 1.0
  with pytest.raises(checks.ConfigError, match=r"config\.rl\.eta=1\.0: EDAC's diversity term "
                                               r"\(eta > 0\) needs actions of 2 or more"):
    train.run(config, str(tmp_path / "run"))


def test_more_rows_a_step_than_transitions_is_refused(data_dir, tmp_path):
  config = _quick("sac_n", data_dir)
  config.rl.updates_per_step, config.batch.size = 40, 64
  with pytest.raises(checks.ConfigError, match="updates_per_step=40 x config.batch.size=64 = "
                                               "2560 rows a step exceed the 2000 transitions"):
    train.run(config, str(tmp_path / "run"))


@pytest.mark.parametrize("field, value, message", [
    ("rl.eta", 1.0, "config.rl.eta=1.0 needs num_critics >= 2"),
    ("rl.ensemble_axis", "critics", "config.rl.ensemble_axis='critics' is not a mesh axis"),
    ("rl.env", "CartPole-v1", "config.rl.env='CartPole-v1'"),
    ("data.transitions", False, "config.data.transitions=False must be True"),
    ("batch.size", 100, "config.batch.size=100 must be divisible by the 8 devices"),
    ("rl.gamma", 1.0, "config.rl.gamma=1.0 must be a number in"),
])
def test_bad_settings_are_refused_by_name(field, value, message):
  config = configs.get("offline_rl.sac_n", "quick")
  config.rl.num_critics = 1
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(checks.ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
    validate(config, 8)
