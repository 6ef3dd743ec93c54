"""The local multi-process launcher: flags and environment, failures, signals, no orphans.

The processes here are small Python programs (no JAX) that record their pid and the pid of
a child they start, so each test can check that nothing it started is left running.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from big_batch import launch
from conftest import REPO

CHILD = """
import os, signal, subprocess, sys, time
process_id = int(next(a for a in sys.argv if a.startswith("--process_id=")).split("=")[1])
out, mode = os.environ["LAUNCH_TEST_DIR"], os.environ["LAUNCH_TEST_MODE"]

def save_and_exit(signum, frame):
  open(os.path.join(out, f"sigterm_{process_id}"), "w").close()
  sys.exit(143)

if mode == "save_on_sigterm":
  signal.signal(signal.SIGTERM, save_and_exit)
if mode == "ignore_sigterm":
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen(["sleep", "300"])
with open(os.path.join(out, f"ready_{process_id}.tmp"), "w") as f:
  f.write(f"{os.getpid()} {grandchild.pid}")
os.rename(os.path.join(out, f"ready_{process_id}.tmp"), os.path.join(out, f"ready_{process_id}"))
if mode == "fail" and process_id == 1:
  while not os.path.exists(os.path.join(out, "ready_0")):  # Fail once both run.
    time.sleep(0.05)
  sys.exit(3)
time.sleep(300)
"""


def alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
  except FileNotFoundError:
    return False


def wait_until(predicate, timeout=30.0):
  deadline = time.monotonic() + timeout
  while not predicate():
    if time.monotonic() > deadline:
      raise TimeoutError("condition not met in time")
    time.sleep(0.05)


def ready_pids(directory, num_processes=2, timeout=30.0) -> list[int]:
  """The pids of every child and grandchild, once all children are running."""
  paths = [os.path.join(directory, f"ready_{i}") for i in range(num_processes)]
  wait_until(lambda: all(os.path.exists(p) for p in paths), timeout)
  return [int(pid) for p in paths for pid in open(p).read().split()]


@pytest.fixture
def child(tmp_path, monkeypatch):
  """(path of the child program, a function setting its mode); it writes into tmp_path."""
  path = tmp_path / "launch_test_child.py"
  path.write_text(CHILD)
  monkeypatch.setenv("LAUNCH_TEST_DIR", str(tmp_path))
  monkeypatch.setenv("PYTHONPATH", str(tmp_path))
  return path, lambda mode: monkeypatch.setenv("LAUNCH_TEST_MODE", mode)


def start_cli(*options, sigint_ignored=False):
  """`python -m big_batch.launch ... --module launch_test_child`, in its own session.

  sigint_ignored: start it with SIGINT ignored, as a background job of a non-interactive
  shell is (`cmd &` in a script); otherwise with SIGINT at its default.
  """
  disposition = signal.SIG_IGN if sigint_ignored else signal.SIG_DFL
  return subprocess.Popen(
      [sys.executable, "-m", "big_batch.launch", "--num_processes", "2",
       "--module", "launch_test_child", "--timeout_seconds", "60", *options],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, disposition))


def stop_all(process, pids):
  """Test cleanup: kill the launcher's session and anything recorded, whatever happened."""
  if process.poll() is None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
  for pid in pids:
    if alive(pid):
      os.kill(pid, signal.SIGKILL)


# --- Commands and environment ---------------------------------------------------------------

def test_process_env_sets_the_cpu_device_count_and_keeps_other_xla_flags():
  base = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_dump_to=/tmp/x",
          "HOME": "/root"}
  env = launch.process_env(4, base)
  assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=4"
  assert env["JAX_NUM_CPU_DEVICES"] == "4" and env["JAX_PLATFORMS"] == "cpu"
  assert env["HOME"] == "/root" and base["XLA_FLAGS"].endswith("/tmp/x")  # Copied.


def test_process_commands_add_the_flags_that_join_each_process():
  commands = launch.process_commands(["python", "-m", "big_batch.main", "--workdir=w"], 3,
                                     "127.0.0.1:1234", 20)
  assert commands[2] == ["python", "-m", "big_batch.main", "--workdir=w",
                         "--coordinator_address=127.0.0.1:1234", "--num_processes=3",
                         "--process_id=2", "--initialization_timeout=20"]
  assert [c[-2] for c in commands] == ["--process_id=0", "--process_id=1", "--process_id=2"]


def test_parse_splits_launcher_options_from_the_program_arguments():
  options, program = launch.parse(["--num_processes", "2", "--devices_per_process", "4", "--",
                                   "--config", "c.py", "--workdir", "w"])
  assert (options.num_processes, options.devices_per_process) == (2, 4)
  assert options.module == "big_batch.main"
  assert program == ["--config", "c.py", "--workdir", "w"]


@pytest.mark.parametrize("num_processes, devices", [(0, 1), (2, 0)])
def test_counts_must_be_positive(num_processes, devices):
  with pytest.raises(ValueError, match="must be at least 1"):
    launch.start(["true"], num_processes, devices)


def test_free_port_is_bindable():
  port = launch.free_port()
  with socket.socket() as s:
    s.bind(("127.0.0.1", port))


def test_root_failure_prefers_the_killed_process_over_the_peers_it_broke():
  assert launch.root_failure([None, None]) is None
  assert launch.root_failure([0, None, launch.PREEMPTED_EXIT_CODE]) is None
  assert launch.root_failure([1, -signal.SIGKILL]) == 1
  assert launch.root_failure([None, 2, 1]) == 1
  # A process that exits with an error makes JAX abort its peers: the exit is the cause.
  assert launch.root_failure([-signal.SIGABRT, 1]) == 1
  assert launch.root_failure([-signal.SIGABRT, None]) == 0
  assert launch.root_failure([-signal.SIGABRT, -signal.SIGKILL]) == 1


# --- Failures and signals -------------------------------------------------------------------

def test_a_failing_process_stops_the_others_and_is_named(child, tmp_path, capsys):
  path, set_mode = child
  set_mode("fail")
  start = time.monotonic()
  code = launch.run([sys.executable, str(path)], 2, timeout_seconds=60)
  assert code == 3 and time.monotonic() - start < 30
  pids = ready_pids(tmp_path, timeout=0)
  message = capsys.readouterr().err
  assert f"process 1 (pid {pids[2]}) exited with code 3; stopping process(es) [0]" in message
  assert not any(alive(pid) for pid in pids)  # Process 0 and both grandchildren too.


def test_sigterm_to_the_launcher_reaches_every_process(child, tmp_path):
  _, set_mode = child
  set_mode("save_on_sigterm")
  process, pids = start_cli("--grace_seconds", "20"), []
  try:
    pids = ready_pids(tmp_path)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == launch.PREEMPTED_EXIT_CODE
    assert os.path.exists(tmp_path / "sigterm_0") and os.path.exists(tmp_path / "sigterm_1")
    assert "preempted: a checkpoint was saved" in process.stdout.read()
    assert not any(alive(pid) for pid in pids)
  finally:
    stop_all(process, pids)


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["default", "inherited_ignored"])
def test_sigint_to_the_launcher_stops_every_process(child, tmp_path, sigint_ignored):
  _, set_mode = child
  set_mode("sleep")
  process, pids = start_cli(sigint_ignored=sigint_ignored), []
  try:
    pids = ready_pids(tmp_path)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) != 0
    assert "was killed by SIGINT" in process.stdout.read()
    assert not any(alive(pid) for pid in pids)
  finally:
    stop_all(process, pids)


def test_processes_that_ignore_sigterm_are_killed_after_the_grace_period(child, tmp_path):
  _, set_mode = child
  set_mode("ignore_sigterm")
  process, pids = start_cli("--grace_seconds", "1"), []
  try:
    pids = ready_pids(tmp_path)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 1
    assert "process(es) [0, 1] did not stop within 1 s; killing them" in process.stdout.read()
    assert not any(alive(pid) for pid in pids)
  finally:
    stop_all(process, pids)


def test_a_killed_launcher_takes_its_processes_with_it(child, tmp_path):
  _, set_mode = child
  set_mode("sleep")
  process, pids = start_cli(), []
  try:
    pids = ready_pids(tmp_path)
    process.kill()  # SIGKILL: the launcher can do nothing; the kernel kills its children.
    process.wait(timeout=10)
    children = pids[0::2]
    wait_until(lambda: not any(alive(pid) for pid in children), timeout=10)
  finally:
    stop_all(process, pids)


def test_timeout_kills_every_process(child, tmp_path, capsys):
  """The timeout counts once both processes and their children run (so it cannot fire
  before they start), and `wait` returns only once all of them have exited."""
  path, set_mode = child
  set_mode("sleep")
  group = launch.start([sys.executable, str(path)], 2)
  try:
    pids = ready_pids(tmp_path)
    assert group.wait(timeout_seconds=0) == 124
    assert not any(alive(pid) for pid in pids)
  finally:
    group.stop()
  assert "timed out after 0 s; killing all processes" in capsys.readouterr().err


def test_stop_waits_for_what_the_processes_started(child, tmp_path):
  """A child outliving its parent process: `stop` returns only once it has exited too."""
  path, set_mode = child
  set_mode("sleep")
  group = launch.start([sys.executable, str(path)], 2)
  try:
    pids = ready_pids(tmp_path)
    for process in group.processes:  # Gone before stop(): only the grandchildren remain.
      os.kill(process.pid, signal.SIGKILL)
      process.wait(timeout=10)
    assert all(alive(pid) for pid in pids[1::2])
    group.stop()
    assert not any(alive(pid) for pid in pids)
  finally:
    group.stop()


def test_stop_names_what_outlives_its_bound(monkeypatch, capsys):
  """A process stuck in the kernel ignores SIGKILL: `stop` gives up after its bound."""
  group = launch.ProcessGroup([["true"]], dict(os.environ))
  group.processes[0].wait(timeout=10)
  monkeypatch.setattr(launch, "STOP_TIMEOUT_SECONDS", 0.05)
  monkeypatch.setattr(launch, "group_members", lambda groups: [12345])
  start = time.monotonic()
  group.stop()
  assert time.monotonic() - start < 5
  assert "pid(s) [12345] still run 0.05 s after SIGKILL" in capsys.readouterr().err


def test_group_members_are_the_running_processes_of_a_group():
  leader = subprocess.Popen(["sleep", "300"], start_new_session=True)
  try:
    assert launch.group_members({leader.pid}) == [leader.pid]
    leader.kill()
    wait_until(lambda: not alive(leader.pid))  # A zombie until reaped: it has exited.
    assert launch.group_members({leader.pid}) == []
  finally:
    leader.kill()
    leader.wait(timeout=10)
