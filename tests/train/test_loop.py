"""End-to-end runs of the trainer on the quick config: outputs, resume, failures, reruns."""
import json
import os
import re
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from big_batch import train
from big_batch.train.loop import NonFiniteLossError
from conftest import run_main

CONFIG = "configs/mnist1d_cnn.py:quick"


def read_params(workdir, step):
  """The params of the checkpoint at `step`, restored as numpy arrays."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  state = ocp.StandardCheckpointer().restore(path)
  return jax.tree.map(np.asarray, state["params"])


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def train_losses(workdir):
  return {r["step"]: r["train/loss"] for r in records(workdir) if "train/loss" in r}


def test_quick_run_writes_every_output(finished_quick_run):
  tmp_path, summary = finished_quick_run
  assert summary["final_step"] == 60 and summary["complete"]
  assert summary["examples_seen"] == 60 * 128
  assert summary["epochs"] == pytest.approx(60 * 128 / 4000)
  assert summary["train"]["accuracy"] > 0.3  # 60 steps learn well above chance (0.1).
  on_disk = json.loads((tmp_path / "summary.json").read_text())
  assert on_disk == json.loads(json.dumps(summary))
  for key in ("loss", "accuracy", "learning_rate", "grad_norm", "param_norm", "update_norm",
              "examples_per_second", "batch_size", "examples_seen", "epoch"):
    assert np.isfinite(on_disk["train"][key]), key
  assert on_disk["train"]["batch_size"] == 128
  losses = train_losses(tmp_path)
  assert sorted(losses) == [20, 40, 60]
  assert losses[60] < losses[20]
  # The test evaluator runs every 30 steps and at the end, over all 1000 test examples.
  test_records = [r for r in records(tmp_path) if "test/accuracy" in r]
  assert [r["step"] for r in test_records] == [30, 60]
  assert summary["evals"]["test"] == pytest.approx(
      {k.split("/")[1]: v for k, v in test_records[-1].items() if k != "step"})
  assert (round(summary["evals"]["test"]["accuracy"] * 1000)
          == pytest.approx(summary["evals"]["test"]["accuracy"] * 1000))  # k / 1000 examples.
  assert (tmp_path / "curves.png").stat().st_size > 1000
  assert any(name.startswith("events") for name in os.listdir(tmp_path / "tensorboard"))
  assert json.loads((tmp_path / "config.json").read_text())["batch"]["size"] == 128
  assert os.listdir(tmp_path / "config_history") == ["0000.json"]
  # Checkpoints every 30 steps, the last 2 kept.
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["30", "60"]


def test_rerunning_a_finished_run_changes_nothing(quick_config, finished_workdir, capsys):
  tmp_path = finished_workdir
  summary = json.loads((tmp_path / "summary.json").read_text())
  before = {name: (tmp_path / name).read_bytes() for name in ("summary.json", "metrics.jsonl")}
  again = train.run(quick_config, str(tmp_path))
  assert "is complete (step 60); nothing to do" in capsys.readouterr().out
  assert again == summary
  assert {name: (tmp_path / name).read_bytes() for name in before} == before
  assert os.listdir(tmp_path / "config_history") == ["0000.json"]
  # Extending the budget is allowed (a resume-safe change) and continues from step 60.
  quick_config.num_steps = 80
  extended = train.run(quick_config, str(tmp_path))
  assert "Resumed from the checkpoint at step 60" in capsys.readouterr().out
  assert extended["final_step"] == 80
  assert sorted(train_losses(tmp_path)) == [20, 40, 60, 80]
  history = sorted(os.listdir(tmp_path / "config_history"))
  assert history == ["0000.json", "0001.json"]  # The rerun that changed nothing left no entry.
  last = json.loads((tmp_path / "config_history" / "0001.json").read_text())
  assert last["changed"] == {"num_steps": {"old": 60, "new": 80}} and last["start_step"] == 60


def test_resume_after_sigkill_is_bitwise_exact(data_dir, tmp_path):
  common = ["--config", CONFIG, f"--config.data.data_dir={data_dir}",
            "--config.checkpoint_every=10", "--config.log_every=10",
            "--config.evals.test.every=60"]
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  assert run_main([*common, "--workdir", straight]).returncode == 0

  process = run_main([*common, "--workdir", killed], stdout=-1, stderr=-3, text=True)
  for line in process.stdout:
    if line.startswith("step 40/"):
      break
  process.send_signal(signal.SIGKILL)
  process.wait()
  steps = [int(s) for s in os.listdir(os.path.join(killed, "checkpoints")) if s.isdigit()]
  assert steps and max(steps) < 60, steps

  result = run_main([*common, "--workdir", killed])
  assert result.returncode == 0, result.stderr[-2000:]
  assert re.search(r"Resumed from the checkpoint at step \d+", result.stdout)
  a, b = read_params(straight, 60), read_params(killed, 60)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert train_losses(killed) == train_losses(straight)


def endless_run_args(data_dir, workdir, log_every):
  """A run that only SIGTERM ends: no budget end, checkpoint or evaluation in sight."""
  return ["--config", CONFIG, f"--config.data.data_dir={data_dir}", "--config.num_steps=100000",
          f"--config.log_every={log_every}", "--config.checkpoint_every=100000",
          "--config.evals.test.every=100000", "--workdir", str(workdir)]


def test_sigterm_checkpoints_then_resume_finishes(data_dir, tmp_path):
  process = run_main(endless_run_args(data_dir, tmp_path, 10), stdout=-1, stderr=-3, text=True)
  for line in process.stdout:
    if line.startswith("step 20/"):
      break
  process.send_signal(signal.SIGTERM)
  output = process.stdout.read()
  assert process.wait(timeout=60) == 143
  assert "SIGTERM: saved a checkpoint at step" in output
  saved = int(re.search(r"saved a checkpoint at step (\d+)", output).group(1))
  assert os.listdir(tmp_path / "checkpoints") == [str(saved)]


def test_sigterm_before_the_first_log_line_saves_and_exits_143(data_dir, tmp_path):
  """No metrics record exists yet: the run must still save, and not fail drawing the plot."""
  process = run_main(endless_run_args(data_dir, tmp_path, 100000), stdout=-1, stderr=-1,
                     text=True)
  for line in process.stdout:
    if line.startswith("Starting from scratch"):
      break
  while not (tmp_path / "config.json").exists():
    pass
  process.send_signal(signal.SIGTERM)
  stdout, stderr = process.communicate(timeout=60)
  assert process.returncode == 143, stderr[-2000:]
  assert "SIGTERM: saved a checkpoint at step" in stdout
  assert "Traceback" not in stderr
  assert json.loads((tmp_path / "summary.json").read_text())["preempted"] is True


def test_a_run_that_restarts_from_scratch_drops_its_old_records(quick_config, finished_workdir,
                                                                 capsys):
  """Killed before its first checkpoint, a run starts again at step 0: its records of the
  first attempt go, so the curve has no duplicate steps."""
  tmp_path = finished_workdir
  for step in os.listdir(tmp_path / "checkpoints"):  # As if killed before the first save.
    os.system(f"rm -rf {tmp_path / 'checkpoints' / step}")
  train.run(quick_config, str(tmp_path))
  assert "Starting from scratch" in capsys.readouterr().out
  steps = [r["step"] for r in records(tmp_path) if "train/loss" in r]
  assert steps == [20, 40, 60]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(quick_config, tmp_path):
  quick_config.optimizer.name = "sgd"
  quick_config.optimizer.learning_rate = 1e30
  quick_config.optimizer.warmup_steps = 0
  quick_config.checkpoint_every = 1
  with pytest.raises(NonFiniteLossError, match=r"non-finite training loss at step (\d+)") as e:
    train.run(quick_config, str(tmp_path))
  bad = int(re.search(r"at step (\d+)", str(e.value)).group(1))
  kept = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert kept and max(kept) == bad - 1
  assert all(np.isfinite(v).all() for v in jax.tree.leaves(read_params(tmp_path, max(kept))))


def test_one_device_and_eight_devices_give_the_same_loss_curve(data_dir, tmp_path):
  args = ["--config", CONFIG, f"--config.data.data_dir={data_dir}"]
  for devices in (1, 8):
    result = run_main([*args, "--workdir", str(tmp_path / str(devices))], devices=devices)
    assert result.returncode == 0, result.stderr[-2000:]
  one, eight = train_losses(tmp_path / "1"), train_losses(tmp_path / "8")
  assert one.keys() == eight.keys()
  np.testing.assert_allclose([one[s] for s in one], [eight[s] for s in one], rtol=1e-4)
