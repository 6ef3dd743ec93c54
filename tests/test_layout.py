"""The package layout: the installed package is found from any directory, the Colab layout
(`git clone .../big_batch` then work from its parent) included, and the shipped configs are
importable wherever the package is installed."""
import os
import subprocess
import sys

import pytest

from big_batch import configs
from big_batch.train.validate import validate
from conftest import REPO

SHORT = ["--config.num_steps=2", "--config.optimizer.warmup_steps=0", "--config.log_every=1", "--config.evals.test.every=2",
         "--config.checkpoint_every=2"]


@pytest.fixture
def parent_of_a_clone(tmp_path):
  """A directory holding the repository under the name `big_batch`, as `git clone` makes it."""
  os.symlink(REPO, tmp_path / "big_batch")
  return tmp_path


def run_in(cwd, args, data_dir):
  env = {**os.environ, "TFDS_DATA_DIR": data_dir, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  env.pop("PYTHONPATH", None)
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300)


def test_the_command_line_runs_from_the_parent_of_the_clone(parent_of_a_clone, data_dir):
  result = run_in(parent_of_a_clone, ["-m", "big_batch.main", "--config",
                                      "big_batch/configs/mnist1d_cnn.py:quick", *SHORT,
                                      "--workdir", str(parent_of_a_clone / "run")], data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "final test:" in result.stdout


def test_train_run_with_a_shipped_config_runs_from_the_parent_of_the_clone(parent_of_a_clone,
                                                                           data_dir):
  code = ("from big_batch import configs, train\n"
          "config = configs.get('mnist1d_cnn', 'quick')\n"
          "config.num_steps, config.evals.test.every, config.optimizer.warmup_steps = 2, 2, 0\n"
          f"summary = train.run(config, {str(parent_of_a_clone / 'run')!r})\n"
          "print('final_step', summary['final_step'])\n")
  result = run_in(parent_of_a_clone, ["-c", code], data_dir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "final_step 2" in result.stdout


# Configs written for another device count than the suite's 8 (their docstrings say how to run).
DEVICES = {"mnist1d_heterogeneous": 2}


@pytest.mark.parametrize("name", configs.names())
@pytest.mark.parametrize("arg", [None, "quick"])
def test_every_shipped_config_validates(name, arg):
  """Every field of every shipped config is read by something, and every value is valid."""
  validate(configs.get(name, arg), DEVICES.get(name, 8))


def test_shipped_config_names_and_errors():
  assert {"mnist1d_cnn", "mnist1d_ghost_bn", "lm_lasp"} <= set(configs.names())
  with pytest.raises(ValueError, match=r"config 'mnist2d' is not one of \["):
    configs.get("mnist2d")


def test_importing_the_package_starts_no_jax_backend():
  """jax.distributed.initialize must run before any JAX call: importing the trainer, every
  task and data set must not compute anything (e.g. a module-level jnp constant)."""
  code = ("from jax._src import xla_bridge\n"
          "import big_batch.main, big_batch.tasks, big_batch.data.datasets, big_batch.selection\n"
          "import big_batch.launch, big_batch.parallel.distributed\n"
          "assert not xla_bridge.backends_are_initialized(), 'an import started the backend'\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
