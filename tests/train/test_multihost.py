"""Multi-process training on one machine: 2 processes x 4 CPU devices against 1 process x 8.

The 2-process runs go through `python -m big_batch.launch` on 127.0.0.1, each under a
timeout; the launcher kills every process group it started, on failure too. The 1 x 8
references run in this pytest process (8 devices from conftest).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from big_batch import launch, train
from big_batch.data import pipeline
from big_batch.parallel import distributed
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib
from conftest import REPO, load_config, run_main

CONFIG = "configs/mnist1d_cnn.py:quick"
SHORT = {"num_steps": 20, "log_every": 5, "checkpoint_every": 5, "evals.test.every": 20}
# FSDP over all 8 devices, so its parameter gathers and gradient reductions cross processes;
# 32 channels give kernels a dimension divisible by 8 (25 has none, so nothing would shard).
FSDP = {**SHORT, "sharding": "fsdp", "mesh.fsdp": 8, "model.channels": (32, 32, 32)}
LAUNCH_TIMEOUT = 150


def config_of(data_dir, overrides):
  config = load_config("mnist1d_cnn", "quick")
  config.data.data_dir = data_dir
  for field, value in overrides.items():
    *parents, leaf = field.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def launch_main(data_dir, overrides, workdir, *, devices=4, **popen):
  """`python -m big_batch.launch --num_processes 2 -- <main args>`: a Popen if `popen`."""
  command = [sys.executable, "-m", "big_batch.launch", "--num_processes", "2",
             "--devices_per_process", str(devices), "--timeout_seconds", str(LAUNCH_TIMEOUT),
             "--", "--config", CONFIG, f"--config.data.data_dir={data_dir}",
             *[f"--config.{k}={v}" for k, v in overrides.items()], "--workdir", str(workdir)]
  if popen:
    return subprocess.Popen(command, cwd=REPO, start_new_session=True, **popen)
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        timeout=LAUNCH_TIMEOUT + 30)


def read_state(workdir, step):
  """The train state of the checkpoint at `step` as numpy arrays, whoever wrote it."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          checkpointer.metadata(path).item_metadata)
  return jax.tree.map(np.asarray, checkpointer.restore(path, abstract))


def assert_same_params(a, b, atol=1e-5):
  """Params equal within float tolerance, except conv biases that feed a batch norm.

  Batch norm subtracts the batch mean, so those biases' gradients are rounding noise
  (~1e-9), and Adam's normalized update turns a different summation order into a different
  ±learning-rate step: they carry no signal to compare.
  """
  a, b = a["params"], b["params"]
  compared = 0
  for (path, x), (_, y) in zip(jax.tree_util.tree_leaves_with_path(a),
                               jax.tree_util.tree_leaves_with_path(b)):
    name = sharding_lib.path_string(path)
    if not re.fullmatch(r"convs/\d+/bias", name):
      np.testing.assert_allclose(x, y, atol=atol, err_msg=name)
      compared += 1
  assert compared >= 8


def train_records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if "train/loss" in r]


def losses(workdir):
  return {r["step"]: r["train/loss"] for r in train_records(workdir)}


def assert_same_curve(a, b):
  la, lb = losses(a), losses(b)
  assert la.keys() == lb.keys() and la
  np.testing.assert_allclose([la[s] for s in la], [lb[s] for s in la], rtol=1e-5)


@pytest.fixture(scope="module")
def one_by_eight(data_dir, tmp_path_factory):
  """The short quick-config run in this process: 1 process x 8 devices."""
  workdir = tmp_path_factory.mktemp("1x8")
  train.run(config_of(data_dir, SHORT), str(workdir))
  return workdir


@pytest.fixture(scope="module")
def two_by_four(data_dir, tmp_path_factory):
  """The same run as 2 processes x 4 devices: (workdir, the launcher's output)."""
  workdir = tmp_path_factory.mktemp("2x4")
  result = launch_main(data_dir, SHORT, workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result.stdout + result.stderr


# --- Equivalence with one process -----------------------------------------------------------

def test_data_parallel_two_processes_match_one(one_by_eight, two_by_four):
  workdir, output = two_by_four
  assert_same_curve(one_by_eight, workdir)
  assert_same_params(read_state(one_by_eight, 20), read_state(workdir, 20))
  # Logs once, from process 0, with every process's throughput.
  assert output.count("step 20/20") == 1 and output.count("final test:") == 1
  assert [r["step"] for r in train_records(workdir)] == [5, 10, 15, 20]
  assert all(r["train/examples_per_second/process_0"] > 0
             and r["train/examples_per_second/process_1"] > 0 for r in train_records(workdir))


def test_fsdp_two_processes_match_one(data_dir, tmp_path):
  one = tmp_path / "1x8"
  train.run(config_of(data_dir, FSDP), str(one))
  result = launch_main(data_dir, FSDP, tmp_path / "2x4")
  assert result.returncode == 0, result.stderr[-3000:]
  assert_same_curve(one, tmp_path / "2x4")
  assert_same_params(read_state(one, 20), read_state(tmp_path / "2x4", 20))
  path = os.path.join(tmp_path, "2x4", "checkpoints", "20", "state")
  kernel = ocp.StandardCheckpointer().metadata(path).item_metadata["params"]["convs"]["1"]
  assert kernel["kernel"].sharding.partition_spec == (None, "fsdp", None)  # Really sharded.


# --- Each process reads its shard -----------------------------------------------------------

def simulated_processes(num_processes):
  """This process's 8 devices split into `num_processes` groups, as hosts would hold them."""
  per = jax.device_count() // num_processes
  return [jax.devices()[i * per:(i + 1) * per] for i in range(num_processes)]


def interleaved(processes):
  """Device order with processes alternating: a process's rows are then not one block."""
  return [device for group in zip(*processes) for device in group]


@pytest.mark.parametrize("num_processes", [1, 2, 4])
@pytest.mark.parametrize("mesh_config", [dict(data=-1), dict(data=2, fsdp=-1),
                                         dict(data=2, seq=-1), dict(fsdp=-1)])
@pytest.mark.parametrize("order", ["in_order", "interleaved"])
def test_device_rows_partition_the_global_batch(num_processes, mesh_config, order):
  processes = simulated_processes(num_processes)
  devices = jax.devices() if order == "in_order" else interleaved(processes)
  sharding = sharding_lib.batch_sharding(mesh_lib.create(mesh_config, devices=devices))
  rows = 32
  held = {p: pipeline.device_rows(sharding, rows, group) for p, group in enumerate(processes)}
  indices = sharding.devices_indices_map((rows,))
  for p, group in enumerate(processes):
    # A process reads exactly the rows its devices hold, each once, ascending.
    wanted = set().union(*(range(rows)[indices[d][0]] for d in group))
    assert held[p].tolist() == sorted(wanted)
  # Processes that hold different rows hold disjoint ones, and together the whole batch.
  distinct = {tuple(r) for r in map(np.ndarray.tolist, held.values())}
  assert sorted(i for r in distinct for i in r) == list(range(rows))
  # The global batch, put together from the processes' reads, is the (seed, step) batch.
  global_rows = pipeline.stream_indices(3, 7 * rows, rows, 1000)
  assembled = np.full(rows, -1)
  for p in held.values():
    assembled[p] = global_rows[p]
  np.testing.assert_array_equal(assembled, global_rows)


def test_in_order_processes_read_consecutive_blocks():
  processes = simulated_processes(2)
  sharding = sharding_lib.batch_sharding(mesh_lib.create(dict(data=-1)))
  np.testing.assert_array_equal(pipeline.device_rows(sharding, 16, processes[1]),
                                np.arange(8, 16))
  np.testing.assert_array_equal(pipeline.process_rows(sharding, 16), np.arange(16))


READER = """
import argparse, json, os
import numpy as np
from big_batch.parallel import distributed
parser = argparse.ArgumentParser()
parser.add_argument("out")
for flag in ("coordinator_address", "num_processes", "process_id", "initialization_timeout"):
  parser.add_argument("--" + flag, type=str if flag == "coordinator_address" else int)
args = parser.parse_args()
distributed.initialize(coordinator_address=args.coordinator_address,
                       num_processes=args.num_processes, process_id=args.process_id,
                       timeout_seconds=args.initialization_timeout)
import jax
from jax.experimental import multihost_utils
from big_batch.data import pipeline
from big_batch.data.datasets import Split
from big_batch.parallel import mesh as mesh_lib, sharding as sharding_lib
reads = []
def read(idx):
  reads.append(idx.tolist())
  return {"index": idx.astype(np.int32)}
groups = [[d for d in jax.devices() if d.process_index == p] for p in range(jax.process_count())]
orders = {"in_order": jax.devices(), "interleaved": [d for g in zip(*groups) for d in g]}
results = {}
for name, devices in orders.items():
  sharding = sharding_lib.batch_sharding(mesh_lib.create(dict(data=-1), devices=devices))
  reads.clear()
  reader = pipeline.BatchReader(Split(100, read), sharding)
  batches = [reader.read(pipeline.stream_indices(5, 16 * step, 16, 100)) for step in range(3)]
  gathered = [multihost_utils.process_allgather(b["index"], tiled=True).tolist()
              for b in batches]
  results[name] = {"reads": list(reads), "global": gathered}
# 100 calls of a collective, none waited for: gloo on CPU deadlocks at ~32 queued, unbounded.
mesh = mesh_lib.create(dict(data=-1))
ones = pipeline.to_global({"x": np.ones(jax.local_device_count(), np.float32)},
                          sharding_lib.batch_sharding(mesh), jax.device_count())["x"]
total = distributed.bound_in_flight(
    jax.jit(lambda x: x.sum(), out_shardings=sharding_lib.replicated(mesh)))
sums = [total(ones) for _ in range(100)]
results["bounded_sums"] = sorted({int(x) for x in jax.device_get(sums)})
with open(os.path.join(args.out, f"process_{jax.process_index()}.json"), "w") as f:
  json.dump(results, f)
"""


def test_each_process_reads_only_its_shard_end_to_end(tmp_path, capfd):
  code = launch.run([sys.executable, "-c", READER, str(tmp_path)], 2, 4,
                    initialization_timeout=60, timeout_seconds=LAUNCH_TIMEOUT)
  assert code == 0, capfd.readouterr().err[-3000:]
  per_process = [json.loads((tmp_path / f"process_{p}.json").read_text()) for p in (0, 1)]
  for order in ("in_order", "interleaved"):
    for step in range(3):
      expected = pipeline.stream_indices(5, 16 * step, 16, 100).tolist()
      reads = [results[order]["reads"][step] for results in per_process]
      assert sorted(reads[0] + reads[1]) == sorted(expected)  # A partition of the batch...
      assert not set(reads[0]) & set(reads[1])                # ...without overlap.
      for results in per_process:
        assert results[order]["global"][step] == expected      # In (seed, step) order.
  step0 = [results["interleaved"]["reads"][0] for results in per_process]
  expected = pipeline.stream_indices(5, 0, 16, 100)
  assert step0[0] == expected[[0, 1, 4, 5, 8, 9, 12, 13]].tolist()
  assert per_process[0]["bounded_sums"] == [8]  # All 100 finished: no deadlock.


# --- Failure, resume, checkpoints across process counts -------------------------------------

def committed_steps(workdir):
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())


def pids_until(process, prefix: str) -> dict:
  """The launcher's process pids, read from its output up to the first line starting with
  `prefix`."""
  pids = {}
  for line in process.stdout:
    if found := re.search(r"process (\d) of 2 is pid (\d+)", line):
      pids[int(found[1])] = int(found[2])
    if line.startswith(prefix):
      return pids
  raise AssertionError(f"the launcher's output ended before a line starting with {prefix!r}")


def test_killed_process_stops_the_run_and_restart_resumes(data_dir, tmp_path, two_by_four):
  workdir = tmp_path / "killed"
  process = launch_main(data_dir, SHORT, workdir, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
  try:
    pids = pids_until(process, "step 10/")
    saved = committed_steps(workdir)
    os.kill(pids[1], signal.SIGKILL)
    output = process.stdout.read()
    assert process.wait(timeout=30) == 128 + signal.SIGKILL
  finally:
    if process.poll() is None:
      os.killpg(process.pid, signal.SIGKILL)
  # Process 0 is usually still blocked in a collective when the launcher stops it; it may
  # also have failed on its own once its peer's sockets closed.
  assert re.search(rf"process 1 \(pid {pids[1]}\) was killed by SIGKILL"
                   r"(; stopping process\(es\) \[0\])?\n", output), output[-2000:]
  for pid in pids.values():
    assert not os.path.exists(f"/proc/{pid}")  # Process 0 was stopped, not left behind.
  assert saved and max(saved) < 20, saved

  result = launch_main(data_dir, SHORT, workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r"Resumed from the checkpoint at step (5|10)\b", result.stdout)
  uninterrupted, _ = two_by_four
  jax.tree.map(np.testing.assert_array_equal, read_state(uninterrupted, 20),
               read_state(workdir, 20))
  assert losses(workdir) == losses(uninterrupted)


def test_sigterm_to_one_process_checkpoints_all_at_one_step(data_dir, tmp_path):
  overrides = {**SHORT, "num_steps": 100000, "evals.test.every": 100000,
               "checkpoint_every": 100000}
  process = launch_main(data_dir, overrides, tmp_path, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
  try:
    pids = pids_until(process, "step 5/")
    os.kill(pids[1], signal.SIGTERM)  # One process only: the other must stop with it.
    output = process.stdout.read()
    assert process.wait(timeout=60) == launch.PREEMPTED_EXIT_CODE
  finally:
    if process.poll() is None:
      os.killpg(process.pid, signal.SIGKILL)
  saved = re.findall(r"SIGTERM: saved a checkpoint at step (\d+)", output)
  assert len(saved) == 1, output[-3000:]  # Printed by process 0 only.
  assert committed_steps(tmp_path) == [int(saved[0])]
  assert "launch: preempted: a checkpoint was saved" in output


def resumable_copy(workdir, destination):
  """A copy of a finished run's workdir without its last checkpoint (step 20)."""
  shutil.copytree(workdir, destination)
  shutil.rmtree(destination / "checkpoints" / "20")
  return destination


def test_checkpoint_of_two_processes_restores_in_one(one_by_eight, two_by_four, data_dir,
                                                     tmp_path, capsys):
  workdir = resumable_copy(two_by_four[0], tmp_path / "2to1")
  train.run(config_of(data_dir, SHORT), str(workdir))
  assert "Resumed from the checkpoint at step 15" in capsys.readouterr().out
  assert_same_curve(one_by_eight, workdir)
  assert_same_params(read_state(one_by_eight, 20), read_state(workdir, 20))


def test_checkpoint_of_one_process_restores_in_two(one_by_eight, data_dir, tmp_path):
  workdir = resumable_copy(one_by_eight, tmp_path / "1to2")
  result = launch_main(data_dir, SHORT, workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Resumed from the checkpoint at step 15" in result.stdout
  assert_same_curve(one_by_eight, workdir)
  assert_same_params(read_state(one_by_eight, 20), read_state(workdir, 20))


def test_unreadable_checkpoint_is_set_aside_once_by_process_0(two_by_four, data_dir, tmp_path):
  """Both processes fail to read step 20, agree to fall back, and only process 0 moves it."""
  workdir = tmp_path / "corrupt"
  shutil.copytree(two_by_four[0], workdir)
  for root, _, files in os.walk(workdir / "checkpoints" / "20" / "state"):
    for name in files:
      if "manifest" in name or "ocdbt" in root:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  result = launch_main(data_dir, SHORT, workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count("checkpoint at step 20 is unreadable") == 1
  assert "Resumed from the checkpoint at step 15" in result.stdout
  assert os.listdir(workdir / "checkpoints_unreadable") == ["20"]
  assert losses(workdir) == losses(two_by_four[0])


# --- Clear errors ---------------------------------------------------------------------------

def test_devices_per_process_not_matching_the_mesh(data_dir, tmp_path):
  result = launch_main(data_dir, {**SHORT, "mesh.data": 8}, tmp_path, devices=3)
  assert result.returncode == 1
  assert "config.mesh={'data': 8, 'fsdp': 1, 'seq': 1} has 8 devices but 6 are available " \
         "(2 processes x 3 devices each)" in result.stderr
  assert re.search(r"launch: process \d \(pid \d+\) exited with code 1", result.stderr)


def test_unreachable_coordinator_times_out_naming_it(data_dir, tmp_path):
  address = f"127.0.0.1:{launch.free_port()}"
  result = run_main(["--config", CONFIG, f"--config.data.data_dir={data_dir}",
                     "--workdir", str(tmp_path), f"--coordinator_address={address}",
                     "--num_processes=2", "--process_id=1", "--initialization_timeout=2"],
                    timeout=60)
  assert result.returncode == 1
  assert f"TimeoutError: the coordinator at {address} did not answer within 2 s" \
         in result.stderr


@pytest.mark.parametrize("flags, match", [
    (dict(num_processes=2, process_id=2), r"--process_id=2 is out of range for "
                                          r"--num_processes=2: it must be in 0..1"),
    (dict(num_processes=2, process_id=-1), r"--process_id=-1 is out of range"),
    (dict(num_processes=0, process_id=0), r"--num_processes=0 must be at least 1"),
])
def test_bad_process_flags_are_named(flags, match):
  with pytest.raises(ValueError, match=match):
    distributed.initialize(coordinator_address="127.0.0.1:1", **flags)


def test_incomplete_process_flags_are_named():
  with pytest.raises(ValueError, match=r"--coordinator_address, --process_id missing"):
    distributed.initialize(num_processes=2)
  assert distributed.initialize() is False  # No flags: a lone process, nothing to join.


def test_malformed_coordinator_address_is_named():
  with pytest.raises(ValueError, match=r"--coordinator_address='node0' must be host:port"):
    distributed.initialize(coordinator_address="node0", num_processes=2, process_id=0)


def test_wait_for_coordinator_returns_once_it_listens():
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    distributed.wait_for_coordinator(f"127.0.0.1:{server.getsockname()[1]}", 5)


def test_check_devices_names_the_process_layout():
  distributed.check_devices(dict(data=-1))
  with pytest.raises(ValueError, match=r"has 4 devices but 8 are available "
                                       r"\(1 processes x 8 devices each\)"):
    distributed.check_devices(dict(data=4))


def test_bounded_calls_with_collectives_do_not_deadlock():
  mesh = mesh_lib.create(dict(data=-1))
  total = jax.jit(lambda x: x.sum(), out_shardings=sharding_lib.replicated(mesh))
  ones = jax.device_put(np.ones(8, np.float32), sharding_lib.batch_sharding(mesh))
  bounded = distributed.bound_in_flight(total)
  assert bounded is not total  # 8 CPU devices: bounded.
  sums = [bounded(ones) for _ in range(400)]  # Unbounded, XLA aborts after hanging 40 s.
  assert {float(s) for s in jax.device_get(sums)} == {8.0}


def test_helpers_in_a_lone_process():
  assert distributed.process_values(2.5) == [2.5]
  assert distributed.process_0_first(lambda: 7, "lone") == 7
  with pytest.raises(KeyError):  # One process: the error propagates as usual.
    with distributed.exit_promptly_on_error():
      raise KeyError("lone")
