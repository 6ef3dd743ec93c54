"""big_batch.advise: each rule against its closed form, the overrides validate, the CLI."""
import os
import subprocess
import sys

import pytest

from big_batch import advise, optim
from big_batch.checks import ConfigError
from big_batch.scaling import power_lines
from big_batch.train.validate import validate
from conftest import REPO


def _by_field(items):
  return {item.field: item for item in items if item.field}


def _apply(config, flags: str):
  """The config with `--config.a.b=v` flags applied (values cast to the field's type)."""
  for flag in flags.split():
    path, value = flag[len("--config."):].split("=")
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = type(node[leaf])(value) if node[leaf] is not None else value
  return config


@pytest.fixture
def adamw_config(quick_config):
  quick_config.optimizer.weight_decay = 1e-4
  return quick_config


def test_adamw_takes_the_sqrt_rule_and_keeps_the_timescale(adamw_config):
  items = _by_field(advise.advise(adamw_config, 1024, devices=8))
  lr = items["optimizer.learning_rate"].value
  assert lr == pytest.approx(1e-2 * (1024 / 128) ** 0.5, rel=1e-3)
  wd = items["optimizer.weight_decay"].value
  examples = adamw_config.num_steps * 128  # The data D is held fixed.
  assert power_lines.timescale(1024, lr, wd, examples) == pytest.approx(
      power_lines.timescale(128, 1e-2, 1e-4, examples), rel=1e-3)
  assert items["num_steps"].value == round(60 * 128 / 1024)
  assert items["optimizer.warmup_steps"].value == max(1, round(10 * 128 / 1024))
  assert (items["batch.size"].value, items["batch.base_size"].value,
          items["batch.lr_scaling"].value) == (1024, 1024, "none")


def test_sgd_takes_the_linear_rule_and_the_stability_cap(quick_config):
  quick_config.optimizer = dict(name="sgd", learning_rate=0.1, momentum=0.9,
                                schedule="cosine", warmup_steps=10, end_value=0.0)
  items = _by_field(advise.advise(quick_config, 512, devices=8))
  assert items["optimizer.learning_rate"].value == pytest.approx(0.4)
  # lambda_max falls from 40 to 20: the curvature transfer doubles the rate (0.2), over the
  # cap 2 (1 + 0.9) / 20 = 0.19. From 20 to 10 it gives 0.2 again, under the cap 0.38.
  evidence = advise.Evidence(128, 512, 40.0, 20.0, 300.0, "test")
  lr = _by_field(advise.advise(quick_config, 512, devices=8, evidence=evidence))[
      "optimizer.learning_rate"]
  assert lr.value == pytest.approx(0.19) and "stability cap" in lr.rule
  evidence = advise.Evidence(128, 512, 20.0, 10.0, 300.0, "test")
  lr = _by_field(advise.advise(quick_config, 512, devices=8, evidence=evidence))[
      "optimizer.learning_rate"]
  assert lr.value == pytest.approx(0.2) and "curvature transfer" in lr.rule


def test_curvature_evidence_sets_the_rate_and_the_noise_scale_is_reported(adamw_config):
  evidence = advise.Evidence(128, 1024, 9.0, 4.0, 256.0, "initialization")
  items = advise.advise(adamw_config, 1024, devices=8, evidence=evidence)
  lr = _by_field(items)["optimizer.learning_rate"]
  assert lr.value == pytest.approx(1e-2 * (9.0 / 4.0) ** 0.5, rel=1e-3)
  assert "9 at 128 rows -> 4 at 1024" in lr.evidence
  noise = next(item for item in items if item.name == "noise scale")
  steps = (1 + 256 / 1024) / (1 + 256 / 128)  # S/S_min at B over S/S_min at B0.
  assert f"{steps:.3g}x its steps" in noise.evidence and "past the critical batch" in noise.evidence


def test_accumulation_keeps_the_base_rows_per_device(quick_config):
  items = _by_field(advise.advise(quick_config, 4096, devices=8))
  k = items["batch.accumulation_steps"].value
  assert k == 4096 // 128 and (4096 // 8) % k == 0  # 16 rows per device, as at 128.
  items = _by_field(advise.advise(quick_config, 1536, devices=8, max_micro_batch=48))
  assert items["batch.accumulation_steps"].value == 4  # 192 rows per device, in 4 x 48.
  items = _by_field(advise.advise(quick_config, 1600, devices=8, max_micro_batch=48))
  assert items["batch.accumulation_steps"].value == 5  # 200 rows: 5 x 40 (4 does not divide).


def test_the_overrides_validate(adamw_config):
  items = advise.advise(adamw_config, 1024, devices=8)
  config = _apply(adamw_config, advise.overrides(items))
  validate(config, 8)
  assert optim.peak_learning_rate(config.optimizer, config.batch) == pytest.approx(
      _by_field(items)["optimizer.learning_rate"].value)


def test_a_batch_the_devices_do_not_divide_is_an_error(quick_config):
  with pytest.raises(ConfigError, match="--batch=100 is not divisible by the 8 devices"):
    advise.advise(quick_config, 100, devices=8)


def test_measure_at_a_finished_run(finished_quick_run, quick_config):
  """Curvature and noise scale at the last checkpoint of configs/mnist1d_cnn.py:quick."""
  workdir, _ = finished_quick_run
  evidence = advise.measure(quick_config, 256, str(workdir), draws=1)
  assert (evidence.base_rows, evidence.target_rows) == (128, 256)
  assert evidence.where == f"step 60 of {workdir}"
  assert evidence.lambda_max_base > 0 and evidence.lambda_max_target > 0
  assert 0 < evidence.b_simple < float("inf")


def test_cli_prints_the_advice_and_writes_the_overrides(data_dir, tmp_path):
  env = {**os.environ, "TFDS_DATA_DIR": data_dir, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  output = tmp_path / "overrides.txt"
  result = subprocess.run(
      [sys.executable, "-m", "big_batch.advise", "--config", "configs/mnist1d_cnn.py:quick",
       "--batch", "512", "--config.optimizer.weight_decay=0.001", "--output", str(output)],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Batch 512 for configs/mnist1d_cnn.py:quick (tuned at batch 128, optimizer adamw):" in (
      result.stdout)
  assert "sqrt in B from 0.01 at batch 128" in result.stdout
  assert output.read_text().strip() in result.stdout
  assert "--config.optimizer.weight_decay=0.002 " in output.read_text()
