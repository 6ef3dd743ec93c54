"""The command line: config file, `:quick`, overrides, and what it prints."""
import json
import re

from conftest import run_main


def test_main_runs_quick_config_with_overrides(data_dir, tmp_path):
  result = run_main(["--config", "configs/mnist1d_cnn.py:quick", "--workdir", str(tmp_path),
                     f"--config.data.data_dir={data_dir}", "--config.optimizer.learning_rate=0.003",
                     "--config.num_steps=20", "--config.model.channels=(8,8,8)"])
  assert result.returncode == 0, result.stderr[-2000:]
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["optimizer"]["learning_rate"] == 0.003
  assert config["model"]["channels"] == [8, 8, 8]
  assert "step 20/20" in result.stdout
  assert "examples/s" in result.stdout and "ETA" in result.stdout
  assert f"Results in {tmp_path}" in result.stdout
  assert re.search(r"final test: accuracy=0\.\d{4} loss=\d+\.\d{4}", result.stdout)
  assert "20 steps, 2,560 examples" in result.stdout
  assert json.loads((tmp_path / "summary.json").read_text())["final_step"] == 20
