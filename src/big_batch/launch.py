"""Starts N local processes joined by `jax.distributed`: a multi-host run on one machine.

    python -m big_batch.launch --num_processes 2 --devices_per_process 4 -- \\
        --config configs/mnist1d_cnn.py:quick --workdir /tmp/mnist1d_2x4

runs `python -m big_batch.main <args> --coordinator_address=127.0.0.1:PORT --num_processes=2
--process_id=I` for I = 0, 1, each with 4 CPU devices; the 8 devices form one mesh, and
cross-process collectives go over loopback (gloo). For tests, benchmarks and single-machine
multi-process runs; on a TPU pod slice or a GPU cluster, run `big_batch.main` itself on every
host (docs/multihost.md).

Failures propagate: when a process exits with an error or is killed, the others are killed
and the launcher exits with that process's status, naming it. A process that exits with 143
(preempted, checkpoint saved) gives the others `--grace_seconds` to save and exit with it.
SIGTERM and SIGINT to the launcher are forwarded to every process, so SIGTERM checkpoints the
run. Every process runs in its own process group, killed as a whole, and is killed by the
kernel if the launcher itself dies: no orphans. The launcher returns only once every process
of those groups has exited.
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time

PREEMPTED_EXIT_CODE = 143  # big_batch.main's status after a SIGTERM checkpoint.
FAILURE_SETTLE_SECONDS = 0.5
# SIGKILL is not ignorable, so only a process stuck in the kernel (uninterruptible I/O)
# outlasts this; stop() then names it rather than hang.
STOP_TIMEOUT_SECONDS = 30
STOP_POLL_SECONDS = 0.01
# Runs first in every process, then execs the program: the kernel SIGKILLs the process when
# the launcher dies, however it dies. (A subprocess preexec_fn would do the same, but runs
# Python between fork and exec, unsafe in a multithreaded parent such as one running JAX.)
_DIE_WITH_LAUNCHER = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):  # The launcher died before prctl took effect.
  sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def say(message: str) -> None:
  print(f"launch: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now (the coordinator binds it next)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(devices_per_process: int, base: dict | None = None) -> dict:
  """`base` (default: this environment) with JAX on `devices_per_process` CPU devices."""
  env = dict(os.environ if base is None else base)
  xla_flags = [flag for flag in env.get("XLA_FLAGS", "").split()
               if not flag.startswith("--xla_force_host_platform_device_count=")]
  env["XLA_FLAGS"] = " ".join(
      [*xla_flags, f"--xla_force_host_platform_device_count={devices_per_process}"])
  env["JAX_NUM_CPU_DEVICES"] = str(devices_per_process)
  env["JAX_PLATFORMS"] = "cpu"
  return env


def process_commands(command: list[str], num_processes: int, coordinator_address: str,
                     initialization_timeout: int) -> list[list[str]]:
  """`command` with the flags that join process I of `num_processes`, for every I."""
  return [[*command, f"--coordinator_address={coordinator_address}",
           f"--num_processes={num_processes}", f"--process_id={i}",
           f"--initialization_timeout={initialization_timeout}"]
          for i in range(num_processes)]


def _dying_with_launcher(command: list[str]) -> list[str]:
  if not sys.platform.startswith("linux"):
    return command
  return [sys.executable, "-c", _DIE_WITH_LAUNCHER, str(os.getpid()), *command]


def describe(code: int) -> str:
  if code < 0:
    return f"was killed by {signal.Signals(-code).name}"
  return f"exited with code {code}"


def status_of(code: int) -> int:
  """A child's return code as a shell exit status (128 + N for death by signal N)."""
  return 128 - code if code < 0 else code


def root_failure(codes: list[int | None]) -> int | None:
  """The failed process to report, or None: one killed by a signal from outside first, then
  one that exited with an error, then one that aborted itself.

  When a process is killed, its peers soon fail in their collectives and exit with an
  error; if both are seen in one poll, the killed one is the cause. When a process exits
  with an error, JAX's coordination service aborts its peers (SIGABRT): the exit is the cause.
  """
  failed = [i for i, code in enumerate(codes) if code not in (None, 0, PREEMPTED_EXIT_CODE)]
  killed = [i for i in failed if codes[i] < 0 and -codes[i] != signal.SIGABRT]
  exited = [i for i in failed if codes[i] > 0]
  return (killed or exited or failed or [None])[0]


def group_members(groups: set[int]) -> list[int]:
  """The pids in process groups `groups` that have not exited, from /proc (Linux).

  A zombie has exited: only its parent's wait is left (init's, for an orphan), so it is not
  counted.
  """
  members = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat") as f:
        state, _, group = f.read().rsplit(")", 1)[1].split()[:3]
    except (FileNotFoundError, ProcessLookupError):  # It exited while being listed.
      continue
    if int(group) in groups and state not in ("Z", "X"):
      members.append(int(entry))
  return sorted(members)


class ProcessGroup:
  """The N processes of one run, each in its own process group, watched until all end."""

  def __init__(self, commands: list[list[str]], env: dict, **popen):
    self.processes = []
    self.signalled = None  # The signal forwarded to the processes, if any.
    for i, command in enumerate(commands):
      self.processes.append(subprocess.Popen(
          _dying_with_launcher(command), env=env, start_new_session=True, **popen))
      say(f"process {i} of {len(commands)} is pid {self.processes[-1].pid}")

  def forward(self, signum: int) -> None:
    """Sends `signum` to every running process (and its children)."""
    self.signalled = signum
    for process in self.processes:
      if process.poll() is None:
        try:
          os.killpg(process.pid, signum)
        except ProcessLookupError:
          pass

  def stop(self) -> None:
    """Kills every process's group (what still runs of it, and what it started); returns once
    all of it has exited, or after STOP_TIMEOUT_SECONDS naming what has not.

    A SIGKILLed process dies when next scheduled, and the processes' children are orphans
    that init reaps, so waiting for the processes alone can return while their children
    still run: the groups are watched in /proc until empty.
    """
    groups = {process.pid for process in self.processes}
    for group in groups:
      try:  # Also after the process ended: its group may hold what it started.
        os.killpg(group, signal.SIGKILL)
      except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while running := group_members(groups):
      if time.monotonic() > deadline:
        say(f"pid(s) {running} still run {STOP_TIMEOUT_SECONDS:g} s after SIGKILL")
        return
      time.sleep(STOP_POLL_SECONDS)
    for process in self.processes:
      process.wait()  # Each has exited (a session leader stays in its group): this reaps it.

  def wait(self, grace_seconds: float = 60, timeout_seconds: float | None = None) -> int:
    """Waits for all processes; returns the run's exit status. Stops the rest on a failure."""
    start = time.monotonic()
    grace_start = None
    while True:
      codes = [process.poll() for process in self.processes]
      if all(code is not None for code in codes):
        return self._status(codes)
      # A failed process leaves the rest blocked in collectives with it: stop them now.
      if root_failure(codes) is not None:
        # A killed process's peers can see its sockets close and exit before the kernel
        # reports its death: give the cause a moment to show before naming it.
        time.sleep(FAILURE_SETTLE_SECONDS)
        codes = [process.poll() for process in self.processes]
        i = root_failure(codes)
        running = [j for j, c in enumerate(codes) if c is None]
        stopping = f"; stopping process(es) {running}" if running else ""
        say(f"process {i} (pid {self.processes[i].pid}) {describe(codes[i])}{stopping}")
        self.stop()
        return status_of(codes[i])
      # After a SIGTERM the processes save a checkpoint together, then exit: allow them time.
      if grace_start is None and (self.signalled or PREEMPTED_EXIT_CODE in codes):
        grace_start = time.monotonic()
      if grace_start is not None and time.monotonic() - grace_start > grace_seconds:
        running = [j for j, c in enumerate(codes) if c is None]
        say(f"process(es) {running} did not stop within {grace_seconds:g} s; killing them")
        self.stop()
        return PREEMPTED_EXIT_CODE if PREEMPTED_EXIT_CODE in codes else 1
      if timeout_seconds is not None and time.monotonic() - start > timeout_seconds:
        say(f"timed out after {timeout_seconds:g} s; killing all processes")
        self.stop()
        return 124
      time.sleep(0.1)

  def _status(self, codes: list[int]) -> int:
    if all(code == 0 for code in codes):
      return 0
    if PREEMPTED_EXIT_CODE in codes:
      say("preempted: a checkpoint was saved; run the same command again to resume")
      return PREEMPTED_EXIT_CODE
    failed = root_failure(codes)
    say(f"process {failed} (pid {self.processes[failed].pid}) {describe(codes[failed])}")
    return status_of(codes[failed])


def start(command: list[str], num_processes: int, devices_per_process: int = 1, *,
          initialization_timeout: int = 300, **popen) -> ProcessGroup:
  """Starts `command` as processes 0 .. num_processes-1 of one run on this machine."""
  if num_processes < 1 or devices_per_process < 1:
    raise ValueError(f"--num_processes={num_processes} and --devices_per_process="
                     f"{devices_per_process} must be at least 1")
  address = f"127.0.0.1:{free_port()}"
  say(f"{num_processes} processes x {devices_per_process} CPU devices, coordinator {address}")
  return ProcessGroup(
      process_commands(command, num_processes, address, initialization_timeout),
      process_env(devices_per_process), **popen)


def run(command: list[str], num_processes: int, devices_per_process: int = 1, *,
        initialization_timeout: int = 300, grace_seconds: float = 60,
        timeout_seconds: float | None = None, **popen) -> int:
  """Runs `command` as `num_processes` joined processes to the end; returns the exit status."""
  group = start(command, num_processes, devices_per_process,
                initialization_timeout=initialization_timeout, **popen)
  try:
    return group.wait(grace_seconds, timeout_seconds)
  finally:
    group.stop()


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  """(launcher options, the program's arguments after '--')."""
  split = argv.index("--") if "--" in argv else len(argv)
  parser = argparse.ArgumentParser(
      prog="python -m big_batch.launch",
      usage="%(prog)s --num_processes N [--devices_per_process D] -- <big_batch.main args>",
      description=__doc__.split("\n")[0])
  parser.add_argument("--num_processes", type=int, required=True)
  parser.add_argument("--devices_per_process", type=int, default=1,
                      help="CPU devices of each process (default 1)")
  parser.add_argument("--module", default="big_batch.main",
                      help="the program, run as python -m MODULE (default big_batch.main)")
  parser.add_argument("--initialization_timeout", type=int, default=300,
                      help="seconds each process waits for the others to join")
  parser.add_argument("--grace_seconds", type=float, default=60,
                      help="seconds the processes get to stop after a SIGTERM or SIGINT")
  parser.add_argument("--timeout_seconds", type=float, default=None,
                      help="kill the run after this many seconds (default: no limit)")
  return parser.parse_args(argv[:split]), argv[split + 1:]


def main(argv: list[str]) -> int:
  options, program_args = parse(argv)
  # The handlers go in before the processes start: a signal handled here is reset to the
  # default in them at exec, whereas one this launcher inherited as ignored (a background job
  # of a non-interactive shell ignores SIGINT) would stay ignored in them, and a forwarded
  # SIGINT would do nothing. A signal that arrives before they exist stops the start-up.
  started = []
  received_early = []

  def forward(received, frame):
    if started:
      started[0].forward(received)
    else:
      received_early.append(received)

  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, forward)
  group = start([sys.executable, "-m", options.module, *program_args], options.num_processes,
                options.devices_per_process,
                initialization_timeout=options.initialization_timeout)
  started.append(group)
  for received in received_early:
    group.forward(received)
  try:
    return group.wait(options.grace_seconds, options.timeout_seconds)
  finally:
    group.stop()


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
