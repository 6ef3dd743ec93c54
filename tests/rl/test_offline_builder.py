"""Offline RL data generated here (src/big_batch/rl/behaviour.py, offline_builder.py)."""
import numpy as np
import pytest

from big_batch.rl import behaviour, evaluate, offline_builder

TINY = behaviour.Budget(online_steps=300, start_steps=100, snapshot_every=100, transitions=250,
                        eval_episodes=2, chunk=50, batch_size=32, hidden=16)


def test_the_builder_round_trips_episodes_with_their_boundaries(tmp_path):
  builder = offline_builder.OfflineRL(config="pendulum-quick-random", data_dir=str(tmp_path),
                                      file_format="array_record")
  builder.download_and_prepare()
  stored = builder.as_data_source()["train"]
  expected = behaviour.collect("pendulum", None, behaviour.QUICK.transitions, seed=1)
  assert len(stored) == len(expected) == 10  # Pendulum's episodes end at 200 steps.
  transitions = 0
  for i, episode in enumerate(expected):
    steps = stored[i]["steps"]
    assert len(steps) == len(episode["steps"]) == 201
    flags = [(bool(steps[t]["is_first"]), bool(steps[t]["is_last"]),
              bool(steps[t]["is_terminal"])) for t in range(len(steps))]
    assert flags[0] == (True, False, False) and flags[-1] == (False, True, False)
    assert all(f == (False, False, False) for f in flags[1:-1])
    for t in (0, 57, 200):
      for key in ("observation", "action", "reward", "discount"):
        np.testing.assert_array_equal(steps[t][key], episode["steps"][t][key])
    transitions += len(steps) - 1
  assert transitions == behaviour.QUICK.transitions
  metadata = builder.info.metadata
  assert metadata["kind"] == "random" and metadata["transitions"] == transitions
  assert metadata["env_id"] == "Pendulum-v1"


def test_a_cut_episode_is_last_but_not_terminal():
  episodes = behaviour.collect("pendulum", None, 250, seed=3)
  assert [len(e["steps"]) - 1 for e in episodes] == [200, 50]
  last = episodes[-1]["steps"][-1]
  assert last["is_last"] and not last["is_terminal"] and last["discount"] == 1.0


def test_the_data_sets_kinds_pick_their_snapshots():
  snapshots = [{"step": 100, "score": 5.0}, {"step": 200, "score": 31.0},
               {"step": 300, "score": 90.0}, {"step": 400, "score": 80.0}]
  assert behaviour.choose(snapshots, "expert")["step"] == 300
  assert behaviour.choose(snapshots, "medium")["step"] == 200  # Nearest 90 / 3.
  assert behaviour.choose(snapshots, "medium-replay")["step"] == 200


def test_online_generation_resumes_and_medium_replay_ends_at_the_medium_snapshot(
    tmp_path, monkeypatch, capsys):
  real = evaluate.rollout
  calls = []

  def stop_at_the_second_snapshot(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return real(*args, **kwargs)

  directory = str(tmp_path / "online")
  with monkeypatch.context() as patch:
    patch.setattr(evaluate, "rollout", stop_at_the_second_snapshot)
    with pytest.raises(KeyboardInterrupt):
      behaviour.train_online("pendulum", TINY, 0, directory)
  snapshots = behaviour.train_online("pendulum", TINY, 0, directory)
  out = capsys.readouterr().err
  assert "resuming at step 100" in out and "ETA" in out
  assert [s["step"] for s in snapshots] == [100, 200, 300]
  episodes, metadata = behaviour.generate("pendulum", "medium-replay", TINY, 0, directory)
  medium = behaviour.choose(snapshots, "medium")
  assert sum(len(e["steps"]) - 1 for e in episodes) == medium["step"]
  assert metadata["policy_score"] == medium["score"]
  episodes, metadata = behaviour.generate("pendulum", "expert", TINY, 0, directory)
  assert sum(len(e["steps"]) - 1 for e in episodes) == TINY.transitions
  assert metadata["policy_score"] == max(s["score"] for s in snapshots)
  with pytest.raises(ValueError, match="kind='best' is not one of"):
    behaviour.generate("pendulum", "best", TINY, 0, directory)


def test_normalized_scores_use_d4rls_reference_returns():
  np.testing.assert_allclose(evaluate.normalized_score("halfcheetah-medium-v2",
                                                       [-280.178953, 12135.0]), [0.0, 100.0])
  np.testing.assert_allclose(evaluate.normalized_score("Hopper-v5", 3234.3), 100.0)
  np.testing.assert_allclose(evaluate.normalized_score("walker2d", 1.629008), 0.0)
  np.testing.assert_allclose(evaluate.normalized_score("Pendulum-v1", -1215.5), 0.0)
  with pytest.raises(ValueError, match="env_name='CartPole-v1' has no reference returns"):
    evaluate.normalized_score("CartPole-v1", 1.0)


def test_the_pendulum_reference_is_the_random_policys_mean_return():
  rng = np.random.default_rng(0)
  returns = evaluate.rollout(lambda o: rng.uniform(-2, 2, (len(o), 1)), "Pendulum-v1", 50, 0)
  # 50 episodes: within 3 standard errors of R_min (-1215.5).
  assert abs(returns.mean() - (-1215.5)) < 3 * returns.std() / np.sqrt(50)
