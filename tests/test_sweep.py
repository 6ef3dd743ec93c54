"""big_batch.sweep: cell configs, targets, the table's arithmetic, a resumable run, the CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from big_batch import sweep
from big_batch.checks import ConfigError
from conftest import REPO


def test_cell_config_sets_batch_seed_rule_and_a_train_evaluator(quick_config):
  cell = sweep.cell_config(quick_config, 512, seed=2, rule="sqrt")
  assert (cell.batch.size, cell.batch.base_size, cell.batch.lr_scaling) == (512, 128, "sqrt")
  assert cell.seed == quick_config.seed + 2
  assert cell.evals.train.to_dict() == dict(every=quick_config.evals.test.every, split="train",
                                            batch_size=quick_config.evals.test.batch_size)
  assert cell.num_steps == quick_config.num_steps
  assert quick_config.batch.size == 128 and "train" not in quick_config.evals  # Untouched.


def test_cell_config_with_epochs_replaces_the_budget(quick_config):
  cell = sweep.cell_config(quick_config, 64, seed=0, epochs=3)
  assert (cell.num_steps, cell.num_epochs, cell.batch.lr_scaling) == (None, 3.0, "none")


def test_a_batch_schedule_is_refused(quick_config):
  quick_config.batch.schedule = ((1000, 256),)
  with pytest.raises(ConfigError, match="config.batch.schedule"):
    sweep.cell_config(quick_config, 64, seed=0)


def test_target_parsing_and_steps_to_target(tmp_path):
  target = sweep.Target.parse("train/loss<=0.5")
  assert (target.metric, target.op, target.value) == ("train/loss", "<=", 0.5)
  assert sweep.Target.parse(" test/accuracy >= 0.9 ").reached(0.95)
  with pytest.raises(ValueError, match="target='loss<0.5'"):
    sweep.Target.parse("loss<0.5")
  path = tmp_path / "metrics.jsonl"
  records = [{"step": 10, "train/loss": 0.9}, {"step": 20, "test/accuracy": 0.3},
             {"step": 30, "train/loss": 0.45}, {"step": 40, "train/loss": 0.3}]
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  assert sweep.steps_to_target(str(path), target) == 30
  assert sweep.steps_to_target(str(path), sweep.Target.parse("train/loss<=0.1")) is None


def _row(batch, seed, train_acc, test_acc, steps_to_target=None):
  return {"batch": batch, "seed": seed, "learning_rate": 0.01, "steps": 100, "examples": 0,
          "wall_seconds": 1.0, "steps_to_target": steps_to_target,
          "evals": {"train": {"accuracy": train_acc, "loss": 0.1},
                    "test": {"accuracy": test_acc, "loss": 0.3}}}


def test_summary_averages_seeds_and_takes_the_gap():
  rows = [_row(64, 0, 0.99, 0.95, 400), _row(64, 1, 0.97, 0.93, 600),
          _row(256, 0, 0.90, 0.80, 200), _row(256, 1, 0.92, 0.84)]
  summary = sweep.summarize(rows, "test")
  assert summary[0]["train"] == pytest.approx((0.98, 0.01))
  assert summary[0]["gap"] == pytest.approx((0.04, 0.0))
  assert summary[1]["gap"] == pytest.approx((0.09, 0.01))
  assert summary[0]["steps_to_target"] == (500.0, 2) and summary[1]["steps_to_target"] == (200, 1)
  text = sweep.table(rows, "test", target=sweep.Target.parse("train/loss<=0.2"))
  assert "| 64 | 2 | 0.01 | 100 | 0.9800 ± 0.0100 | 0.9400 ± 0.0100 | 0.0400 ± 0.0000 |" in text
  assert "500 (2/2 seeds)" in text and "B_crit" in text


def test_critical_batch_of_the_summary_fits_the_hyperbola():
  rows = [_row(b, 0, 0.9, 0.8, 100 * (1 + 300 / b)) for b in (32, 128, 512, 2048)]
  fit = sweep.critical_batch(sweep.summarize(rows, "test"))
  assert (fit.s_min, fit.b_crit) == (pytest.approx(100), pytest.approx(300))


@pytest.fixture(scope="module")
def swept(data_dir, tmp_path_factory):
  from conftest import load_config
  config = load_config("mnist1d_cnn", "quick")
  config.data.data_dir = data_dir
  config.num_steps, config.optimizer.warmup_steps, config.evals.test.every = 12, 2, 12
  config.log_every = 6
  workdir = str(tmp_path_factory.mktemp("sweep"))
  rows = sweep.run(config, [16, 32], "sqrt", seeds=1, workdir=workdir, target="train/loss<=9")
  return config, workdir, rows


def test_run_trains_every_cell_with_the_rule(swept):
  config, workdir, rows = swept
  assert [(r["batch"], r["steps"]) for r in rows] == [(16, 12), (32, 12)]
  for row in rows:
    assert row["learning_rate"] == pytest.approx(1e-2 * np.sqrt(row["batch"] / 128))
    assert row["examples"] == 12 * row["batch"]
    assert set(row["evals"]) == {"test", "train"}
    assert 0 <= row["evals"]["train"]["accuracy"] <= 1
    assert row["steps_to_target"] == config.log_every  # The first log reaches loss <= 9.
    assert os.path.basename(row["workdir"]) == f"sqrt_b{row['batch']}_s0"


def test_rerun_returns_the_finished_cells_unchanged(swept, capsys):
  config, workdir, rows = swept
  metrics = os.path.join(rows[0]["workdir"], "metrics.jsonl")
  before = os.stat(metrics).st_mtime_ns
  again = sweep.run(config, [16, 32], "sqrt", seeds=1, workdir=workdir, target="train/loss<=9")
  assert again == rows
  assert os.stat(metrics).st_mtime_ns == before
  assert "nothing to do" in capsys.readouterr().out


def test_write_results_writes_table_and_plot(swept, tmp_path):
  config, _, rows = swept
  sweep.write_results(rows, str(tmp_path), config, "quick", "train/loss<=9")
  text = (tmp_path / "table.md").read_text()
  assert text.startswith("quick") and "| 16 | 1 |" in text and "| 32 | 1 |" in text
  assert (tmp_path / "plot.png").stat().st_size > 10_000


def _cli(args, data_dir, devices=1):
  env = {**os.environ, "TFDS_DATA_DIR": data_dir, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  return subprocess.run([sys.executable, "-m", "big_batch.sweep", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_cli_sweeps_and_writes_its_table(data_dir, tmp_path):
  result = _cli(["--config", "configs/mnist1d_cnn.py:quick", "--batch", "16", "--rule", "linear",
                 "--config.num_steps=6", "--config.optimizer.warmup_steps=0",
                 f"--config.data.data_dir={data_dir}", "--workdir", str(tmp_path)], data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "sweep: cell 1/1 (batch 16, seed 0)" in result.stdout
  assert "| 16 | 1 | 0.00125 | 6 |" in result.stdout
  assert (tmp_path / "table.md").exists() and (tmp_path / "plot.png").exists()


def test_cli_error_is_one_line_with_status_2(data_dir, tmp_path):
  result = _cli(["--config", "configs/mnist1d_cnn.py:quick", "--batch", "16,x",
                 "--workdir", str(tmp_path)], data_dir)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1] == "error: --batch=16,x must list positive integers"


def test_a_warmup_longer_than_a_cell_fails_before_any_training(quick_config, tmp_path):
  quick_config.optimizer.warmup_steps = 500
  with pytest.raises(ConfigError, match="warmup_steps=500 is longer than the 60 steps of the "
                                        "cell at batch 16"):
    sweep.run(quick_config, [16], workdir=str(tmp_path))
  assert not os.listdir(tmp_path)
