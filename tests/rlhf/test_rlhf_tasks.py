"""The reward-model and alignment tasks (quick configs): runs through the trainer, the
alignment step's metrics, exact resume, the reward model read from its run, config errors."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from big_batch import train
from big_batch.checks import ConfigError
from big_batch.data import datasets
from big_batch.rlhf import align_task, reward, score
from conftest import load_config, run_preempted_at


def metrics_of(workdir):
  return [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]


@pytest.fixture(scope="module")
def reward_run(data_dir, tmp_path_factory):
  config = load_config("rlhf_reward_model", "quick")
  config.data.data_dir = data_dir
  workdir = str(tmp_path_factory.mktemp("rm"))
  return config, workdir, train.run(config, workdir, devices=jax.devices()[:1])


def test_reward_model_trains_and_reports_held_out_accuracy(reward_run):
  _, workdir, summary = reward_run
  assert summary["final_step"] == 8
  final = summary["evals"]["validation"]
  assert 0.0 <= final["accuracy"] <= 1.0 and final["loss"] > 0
  logged = [m for m in metrics_of(workdir) if "train/loss" in m]
  assert all(0.0 <= m["train/tie_fraction"] < 0.5 for m in logged)


def test_preference_pairs_are_ranked_by_the_prose_score():
  windows = jax.random.randint(jax.random.key(0), (64, 24), 32, 127).astype(jnp.int32)
  @jax.jit
  def ranked(windows):
    pairs = reward.preference_pairs(jax.random.key(1), windows, 8, 0.5)
    return (pairs, score.prose_score(pairs["chosen"], pairs["chosen_mask"]),
            score.prose_score(pairs["rejected"], pairs["rejected_mask"]))
  pairs, chosen, rejected = ranked(windows)
  assert bool(jnp.all(chosen >= rejected))
  np.testing.assert_array_equal(pairs["weight"], (chosen - rejected > 1e-6).astype(np.float32))


def test_prose_score_by_hand():
  def of(text):
    tokens = jnp.asarray([list(text.encode())], jnp.int32)
    return float(jax.jit(score.prose_score)(tokens, jnp.ones_like(tokens))[0])
  # "the cat sat on a mat.": 21 bytes, 20 lowercase or space, 5 spaces, 11 distinct bytes
  # (t h e ' ' c a s o n m .), no repeated neighbours.
  text = "the cat sat on a mat."
  f, d, rate = 20 / 21, min(1, len(set(text)) / 12), 5 / 21
  assert of(text) == pytest.approx(f * d * (1 - abs(rate - 1 / 6) / (5 / 6)), rel=1e-6)
  # One byte repeated: F = 1, D = 1/12, no spaces S = 1 − (1/6)/(5/6), every neighbour a repeat.
  assert of("aaaaaaaa") == pytest.approx(1 / 12 * 0.8 - 1.0)
  assert of("ABCDEFGH") == 0.0


def test_alignment_quick_config_trains_with_its_metrics(data_dir, tmp_path, monkeypatch,
                                                        compilation_cache_dir):
  config = load_config("rlhf_remax", "quick")
  config.data.data_dir = data_dir
  config.log_every = 1  # Every step's metrics, so a resumed log matches the uninterrupted one.
  summary = train.run(config, str(tmp_path / "run"), devices=jax.devices()[:1])
  assert summary["final_step"] == 6
  # Preempted after step 3 and resumed through the trainer's checkpoint: the same run.
  one = jax.devices()[:1]
  assert run_preempted_at(config, tmp_path / "resumed", 3, monkeypatch,
                          devices=one)["final_step"] == 3
  assert train.run(config, str(tmp_path / "resumed"), devices=one)["final_step"] == 6
  train_metrics = lambda w: [{k: v for k, v in m.items() if "per_second" not in k}  # noqa: E731
                             for m in metrics_of(w) if "train/loss" in m]
  assert train_metrics(tmp_path / "resumed") == train_metrics(tmp_path / "run")
  jax.tree.map(np.testing.assert_array_equal,
               ocp.StandardCheckpointer().restore(f"{tmp_path}/resumed/checkpoints/6/state"),
               ocp.StandardCheckpointer().restore(f"{tmp_path}/run/checkpoints/6/state"))
  evals = summary["evals"]["validation"]
  for key in ("reward_sampled", "reward_greedy", "ground_truth_greedy", "kl",
              "response_length_sampled"):
    assert np.isfinite(evals[key])
  assert 0 < evals["response_length_greedy"] <= config.alignment.response_len
  logged = [m for m in metrics_of(tmp_path / "run") if "train/loss" in m][-1]
  assert {"train/reward", "train/reward_greedy", "train/ground_truth", "train/kl",
          "train/grad_norm", "train/response_length"} <= set(logged)
  # reward='ground_truth': the reward is the prose score; ReMax's baseline is the greedy reward.
  assert logged["train/reward"] == pytest.approx(logged["train/ground_truth"])
  assert logged["train/baseline"] == pytest.approx(logged["train/reward_greedy"])


def quick_task(data_dir, estimator):
  config = load_config("rlhf_remax", "quick")
  config.data.data_dir = data_dir
  config.alignment.estimator = estimator
  config.evals = {}
  data = datasets.load(config.data)
  task = align_task.build(config, data, None, config.num_steps)
  batches = [data.train.read(np.arange(i * 8, i * 8 + 8)) for i in range(4)]
  return config, task, jax.jit(task.train_step), batches


# Slow: the quick config's test above resumes ReMax through the trainer's checkpoints.
@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["remax", "ppo", "rloo"])
def test_alignment_step_resumes_exactly_and_keeps_the_reference(data_dir, estimator):
  """Steps are pure functions of (state, batch): a state written to the host after step 2
  and put back continues to the same state as the uninterrupted run (what a checkpoint
  resume relies on); the reference does not move."""
  _, task, step, batches = quick_task(data_dir, estimator)
  state = jax.jit(task.init)(jax.random.key(0))
  reference = jax.device_get(state["reference"])
  for batch in batches[:2]:
    state, _ = step(state, batch)
  resumed = jax.device_put(jax.device_get(state))
  for batch in batches[2:]:
    state, metrics = step(state, batch)
    resumed, _ = step(resumed, batch)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state), jax.device_get(resumed))
  jax.tree.map(np.testing.assert_array_equal, reference, jax.device_get(state["reference"]))
  assert all(np.isfinite(float(v)) for v in jax.device_get(metrics).values())
  assert float(metrics["grad_norm"]) > 0
  if estimator == "ppo":
    assert 0 <= float(metrics["clip_fraction"]) <= 1 and float(metrics["value_loss"]) >= 0


def test_alignment_reads_the_reward_model_run(reward_run, data_dir, tmp_path):
  rm_config, rm_workdir, _ = reward_run
  config = load_config("rlhf_remax", "quick")
  config.data.data_dir = data_dir
  config.model = rm_config.model
  config.data.seq_len = rm_config.preference.prompt_len
  config.alignment.update(reward="model", reward_workdir=rm_workdir)
  config.alignment.estimator = "ppo"
  config.evals = {}
  task = align_task.build(config, datasets.load(config.data), None, config.num_steps)
  state = jax.jit(task.init)(jax.random.key(0))
  saved = ocp.StandardCheckpointer().restore(f"{rm_workdir}/checkpoints/8/state")
  # The frozen reward model is the trained one, and PPO's critic starts from it.
  # (orbax restores the NNX list keys as strings: compare the leaves in order.)
  for name in ("reward", "critic"):
    for got, want in zip(jax.tree.leaves(jax.device_get(state[name])),
                         jax.tree.leaves(saved["params"]), strict=True):
      np.testing.assert_array_equal(got, want)


def test_bad_alignment_values_are_config_errors(tmp_path):
  config = load_config("rlhf_remax", "quick")
  config.alignment.estimator = "grpo"
  with pytest.raises(ConfigError, match="estimator"):
    train.run(config, str(tmp_path / "a"))
  config = load_config("rlhf_remax", "quick")
  config.alignment.update(estimator="rloo", group_size=1)
  with pytest.raises(ConfigError, match="group_size"):
    train.run(config, str(tmp_path / "b"))
  config = load_config("rlhf_remax", "quick")
  config.alignment.reward = "model"
  with pytest.raises(ConfigError, match="reward_workdir"):
    train.run(config, str(tmp_path / "c"))
