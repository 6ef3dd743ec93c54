"""A workdir on cloud storage (gs://), against a local GCS emulator: a quick run into
gs://bucket/run, killed and resumed, equals the same run in a local directory.

Each library that touches the bucket has its own switch to reach the emulator
(../shared/reference/environment.md): gcsfs (and so etils.epath) reads STORAGE_EMULATOR_HOST,
tensorstore (orbax's arrays) TENSORSTORE_GCS_HTTP_URL and a test token. The emulator runs with
the generation headers real GCS sends (tests/gcs_emulator.py).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from gcsfs.core import GCSFileSystem

from big_batch import train
from conftest import REPO, run_main

BUCKET = "big-batch-test"
ARGS = ["--config", "configs/mnist1d_cnn.py:quick", "--config.checkpoint_every=10",
        "--config.log_every=10", "--config.evals.test.every=30"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator():
  """(environment for the trainer, gcsfs file system) of an emulator on a loopback port."""
  port = free_port()
  server = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "gcs_emulator.py"),
                             "start", "--host", "127.0.0.1", "--port", str(port),
                             "--in-memory", "--default-bucket", BUCKET],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 30
  while True:
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      break
    except OSError:
      assert time.monotonic() < deadline, "the GCS emulator did not start"
      time.sleep(0.2)
  url = f"http://127.0.0.1:{port}"
  env = {"STORAGE_EMULATOR_HOST": url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
         "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test"}
  # This process reads the bucket with gcsfs's plain file system: its default (experimental)
  # one first probes the bucket over gRPC, which the emulator does not speak, for 60 s.
  yield env, GCSFileSystem(endpoint_url=url, token="anon", skip_instance_cache=True)
  server.terminate()
  server.wait(timeout=30)


def losses(lines):
  return {r["step"]: r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r}


def test_a_gs_workdir_killed_and_resumed_equals_a_local_run(emulator, quick_config, data_dir,
                                                            tmp_path):
  env, fs = emulator
  quick_config.checkpoint_every, quick_config.log_every = 10, 10
  local = train.run(quick_config, str(tmp_path / "local"))

  workdir = f"gs://{BUCKET}/run"
  args = [*ARGS, f"--config.data.data_dir={data_dir}", "--workdir", workdir]
  process = run_main(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  for line in process.stdout:
    if line.startswith("step 40/"):
      break
  process.send_signal(signal.SIGKILL)
  process.wait()
  saved = sorted(int(p.rsplit("/", 1)[1]) for p in fs.ls(f"{BUCKET}/run/checkpoints")
                 if p.rsplit("/", 1)[1].isdigit())
  assert saved and max(saved) < 60, saved

  result = run_main(args, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Resumed from the checkpoint at step" in result.stdout
  with fs.open(f"{BUCKET}/run/metrics.jsonl") as f:
    remote = f.read().decode().splitlines()
  local_lines = (tmp_path / "local" / "metrics.jsonl").read_text().splitlines()
  assert losses(remote) == losses(local_lines) and sorted(losses(remote)) == [10, 20, 30, 40,
                                                                              50, 60]
  summary = json.loads(fs.cat(f"{BUCKET}/run/summary.json"))
  assert summary["final_step"] == 60
  assert summary["evals"] == local["evals"]
  assert summary["train"]["param_norm"] == local["train"]["param_norm"]
  names = {p.rsplit("/", 1)[1] for p in fs.ls(f"{BUCKET}/run")}
  assert {"config.json", "config_history", "metrics.jsonl", "summary.json", "curves.png",
          "tensorboard", "checkpoints"} <= names
  events = fs.ls(f"{BUCKET}/run/tensorboard")
  assert events and all(fs.size(e) > 0 for e in events)
