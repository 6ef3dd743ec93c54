"""Test setup: 8 simulated CPU devices, set before JAX initializes its backend."""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import jax  # noqa: E402  (must come after XLA_FLAGS)

jax.config.update("jax_num_cpu_devices", 8)

import os as _os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import shutil  # noqa: E402

import pytest  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache  # noqa: E402

REPO = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A tfds data dir shared by the session; offline builders prepare into it on first use."""
  return str(tmp_path_factory.mktemp("tensorflow_datasets"))


def load_config(name: str, arg: str | None = None):
  """configs/<name>.py's get_config(arg), as `big_batch.configs` serves it."""
  from big_batch import configs
  return configs.get(name, arg)


@pytest.fixture(scope="session")
def finished_quick_run(data_dir, tmp_path_factory):
  """(workdir, summary) of one complete run of configs/mnist1d_cnn.py:quick: 60 steps, logs at
  20, 40, 60, test evaluations at 30 and 60, checkpoints at 30 and 60. Read it, don't write."""
  from big_batch import train
  config = load_config("mnist1d_cnn", "quick")
  config.data.data_dir = data_dir
  workdir = tmp_path_factory.mktemp("finished_quick_run")
  return workdir, train.run(config, str(workdir))


@pytest.fixture
def finished_workdir(finished_quick_run, tmp_path):
  """A copy of `finished_quick_run`'s workdir that a test may rerun, change or corrupt."""
  copy = tmp_path / "finished"
  shutil.copytree(finished_quick_run[0], copy)
  return copy


@pytest.fixture
def quick_config(data_dir):
  """configs/mnist1d_cnn.py:quick reading from the session's data dir."""
  config = load_config("mnist1d_cnn", "quick")
  config.data.data_dir = data_dir
  return config


def run_main(args, *, devices=8, timeout=300, env=None, **popen):
  """Runs `python -m big_batch.main ARGS` in a subprocess with `devices` CPU devices
  (`env`: further environment variables)."""
  env = {**_os.environ, **(env or {})}
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  command = [sys.executable, "-m", "big_batch.main", *args]
  if popen:
    return subprocess.Popen(command, env=env, cwd=REPO, **popen)
  return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


@pytest.fixture(scope="module")
def compilation_cache_dir(tmp_path_factory):
  """A persistent compilation cache for this module's runs, unset again afterwards."""
  previous = {name: getattr(jax.config, name) for name in (
      "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
      "jax_persistent_cache_min_entry_size_bytes")}
  compilation_cache.reset_cache()
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  yield
  for name, value in previous.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


def run_preempted_at(config, workdir, step: int, monkeypatch, **run_kwargs):
  """train.run(config, workdir, **run_kwargs) as if SIGTERM arrived at `step`: it checkpoints
  and stops there; the summary it returns says so. Running it again resumes."""
  from big_batch import train
  from big_batch.train import loop
  real = loop._PreemptionFlag.check

  def check(self, current):
    self.raised = self.raised or current == step
    return real(self, current)

  with monkeypatch.context() as patch:
    patch.setattr(loop._PreemptionFlag, "check", check)
    return train.run(config, str(workdir), **run_kwargs)
