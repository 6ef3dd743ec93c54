"""End-to-end runs of the trainer on the quick config: outputs, resume, failures."""
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
  path = os.path.join(workdir, "checkpoints", str(step), "default")
  state = ocp.StandardCheckpointer().restore(path)
  return jax.tree.map(np.asarray, state["params"])


def train_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return {r["step"]: r["train/loss"] for r in records if "train/loss" in r}


def test_quick_run_writes_every_output(quick_config, tmp_path):
  summary = train.run(quick_config, str(tmp_path))
  assert summary["final_step"] == quick_config.num_steps
  assert summary["examples_seen"] == quick_config.num_steps * quick_config.batch.size
  assert 0.0 <= summary["eval_accuracy"] <= 1.0
  assert summary["train"]["accuracy"] > 0.3  # 60 steps learn well above chance (0.1).
  with open(tmp_path / "summary.json") as f:
    on_disk = json.load(f)
  for key in ("eval_accuracy", "eval_loss", "final_step", "examples_seen", "wall_time_seconds"):
    assert key in on_disk
  for key in ("loss", "accuracy", "learning_rate", "grad_norm", "param_norm", "update_norm",
              "examples_per_second"):
    assert np.isfinite(on_disk["train"][key])
  losses = train_losses(tmp_path)
  assert sorted(losses) == [20, 40, 60]
  assert losses[60] < losses[20]
  assert (tmp_path / "curves.png").stat().st_size > 1000
  assert any(name.startswith("events") for name in os.listdir(tmp_path / "tensorboard"))
  assert json.loads((tmp_path / "config.json").read_text())["batch"]["size"] == 128
  # Checkpoints every 30 steps, the last 2 kept.
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["30", "60"]


def test_resume_after_sigkill_is_bitwise_exact(data_dir, tmp_path):
  common = ["--config", CONFIG, f"--config.data.data_dir={data_dir}",
            "--config.checkpoint_every=10", "--config.log_every=10", "--config.eval_every=60"]
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


def test_sigterm_checkpoints_then_resume_finishes(data_dir, tmp_path):
  args = ["--config", CONFIG, f"--config.data.data_dir={data_dir}", "--config.num_steps=100000",
          "--config.log_every=10", "--config.checkpoint_every=100000",
          "--config.eval_every=100000", "--workdir", str(tmp_path)]
  process = run_main(args, stdout=-1, stderr=-3, text=True)
  for line in process.stdout:
    if line.startswith("step 20/"):
      break
  process.send_signal(signal.SIGTERM)
  output = process.stdout.read()
  assert process.wait(timeout=60) == 143
  assert "SIGTERM: saved a checkpoint at step" in output
  saved = int(re.search(r"saved a checkpoint at step (\d+)", output).group(1))
  assert os.listdir(tmp_path / "checkpoints") == [str(saved)]


def test_unreadable_latest_checkpoint_falls_back(quick_config, tmp_path, capsys):
  train.run(quick_config, str(tmp_path))
  # Corrupt step 60's array data; leave a half-written (uncommitted) step 90 beside it.
  for root, _, files in os.walk(tmp_path / "checkpoints" / "60"):
    for name in files:
      if "manifest" in name or name.endswith(".zarray") or "ocdbt" in root:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  os.makedirs(tmp_path / "checkpoints" / "90.orbax-checkpoint-tmp")
  quick_config.num_steps = 90
  summary = train.run(quick_config, str(tmp_path))
  out = capsys.readouterr().out
  assert "checkpoint at step 60 is unreadable" in out
  assert "Resumed from the checkpoint at step 30" in out
  assert summary["final_step"] == 90
  assert os.path.isdir(tmp_path / "checkpoints_unreadable" / "60")  # Kept, not deleted.


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
