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

import pytest  # noqa: E402

REPO = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """A tfds data dir shared by the session; offline builders prepare into it on first use."""
  return str(tmp_path_factory.mktemp("tensorflow_datasets"))


def load_config(name: str, arg: str | None = None):
  """configs/<name>.py's get_config(arg)."""
  sys.path.insert(0, _os.path.join(REPO, "configs"))
  try:
    module = __import__(name)
  finally:
    sys.path.pop(0)
  return module.get_config(arg)


@pytest.fixture
def quick_config(data_dir):
  """configs/mnist1d_cnn.py:quick reading from the session's data dir."""
  config = load_config("mnist1d_cnn", "quick")
  config.data.data_dir = data_dir
  return config


def run_main(args, *, devices=8, timeout=300, **popen):
  """Runs `python -m big_batch.main ARGS` in a subprocess with `devices` CPU devices."""
  env = dict(_os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  command = [sys.executable, "-m", "big_batch.main", *args]
  if popen:
    return subprocess.Popen(command, env=env, cwd=REPO, **popen)
  return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)
