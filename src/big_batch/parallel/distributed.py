"""Joining the processes of a multi-host run with `jax.distributed`, and what they must agree on.

Every process runs the same program; `initialize` connects them before anything touches the
backend, after which `jax.devices()` lists the devices of all processes and one mesh spans
them. Two ways in:

* `auto=True`: `jax.distributed.initialize()` discovers the coordinator, the process count and
  this process's id itself (Cloud TPU, Slurm, Open MPI).
* `coordinator_address='host:port'` with `num_processes` and `process_id`: anywhere else,
  e.g. the local processes that `big_batch.launch` starts. CPU devices talk over gloo.
"""
import collections
import contextlib
import os
import socket
import sys
import time
import traceback

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from big_batch.parallel import mesh as mesh_lib


def _host_and_port(address: str) -> tuple[str, int]:
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"--coordinator_address={address!r} must be host:port")
  return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout_seconds: float) -> None:
  """Returns once `address` accepts TCP connections; TimeoutError naming it otherwise.

  Without this, a process whose coordinator never appears is aborted from inside XLA
  after `initialization_timeout` with a message that names neither the address nor the cause.
  """
  host, port = _host_and_port(address)
  deadline = time.monotonic() + timeout_seconds
  while True:
    try:
      with socket.create_connection((host, port), timeout=1.0):
        return
    except OSError as error:
      if time.monotonic() >= deadline:
        raise TimeoutError(
            f"the coordinator at {address} did not answer within {timeout_seconds:g} s "
            f"(--initialization_timeout; last error: {error}). Is process 0 running, and "
            "is that address reachable from this host?") from None
      time.sleep(0.2)


def initialize(*, auto: bool = False, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               timeout_seconds: int = 300) -> bool:
  """Joins this process to a multi-process run; False (and nothing done) for a lone process.

  Must run before anything touches the JAX backend. Errors name the offending flag.
  """
  explicit = {"--coordinator_address": coordinator_address, "--num_processes": num_processes,
              "--process_id": process_id}
  if not auto and all(v is None for v in explicit.values()):
    return False
  if not auto and None in explicit.values():
    missing = [name for name, value in explicit.items() if value is None]
    raise ValueError(f"{', '.join(missing)} missing: a multi-process run needs all of "
                     f"{list(explicit)}, or --distributed where JAX discovers them itself")
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"--num_processes={num_processes} must be at least 1")
  if num_processes is not None and process_id is not None and not (
      0 <= process_id < num_processes):
    raise ValueError(f"--process_id={process_id} is out of range for "
                     f"--num_processes={num_processes}: it must be in 0..{num_processes - 1}")
  if timeout_seconds < 1:
    raise ValueError(f"--initialization_timeout={timeout_seconds} must be at least 1 second")
  if coordinator_address is not None:
    _host_and_port(coordinator_address)
  # Already gloo by default in jax 0.10.2; explicit, because CPU processes need *some*
  # cross-process collectives and the default has changed before.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  deadline = time.monotonic() + timeout_seconds
  if coordinator_address is not None and process_id != 0:
    wait_for_coordinator(coordinator_address, timeout_seconds)
  jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes,
      process_id=process_id,
      initialization_timeout=max(1, int(deadline - time.monotonic() + 0.999)))
  return True


def check_devices(mesh_config) -> None:
  """Every process has as many devices, and the mesh of `mesh_config` covers all of them."""
  per_process = collections.Counter(d.process_index for d in jax.devices())
  if len(set(per_process.values())) > 1:
    raise ValueError(f"the processes have different numbers of devices "
                     f"{dict(sorted(per_process.items()))}; each needs the same number")
  try:
    mesh_lib.axis_sizes(mesh_config, jax.device_count())
  except ValueError as error:
    raise ValueError(f"{error} ({jax.process_count()} processes x {jax.local_device_count()} "
                     "devices each)") from None


def process_0_first(fn, name: str, timeout_seconds: int = 3600):
  """fn() on process 0, then on the others: e.g. preparing a data set in a shared directory.

  The wait is a coordination-service barrier, not a device collective, so it tolerates a
  long `fn` (collectives time out after 30 s waiting for a peer).
  """
  barrier = ocp.multihost.get_barrier_sync_fn()  # A no-op with one process.
  if jax.process_index() == 0:
    result = fn()
  barrier(key=f"big_batch_{name}", timeout_ms=timeout_seconds * 1000)
  if jax.process_index() != 0:
    result = fn()
  return result


def bound_in_flight(fn, done=lambda out: out, limit: int = 4):
  """`fn`, a jitted function, made to wait while `limit` of its calls still run, on CPU only.

  XLA's CPU runtime deadlocks when many computations with collectives queue over several
  devices (jax 0.10.2 on this 2-core machine: 8 devices in one process hang within 400
  unawaited all-reduces, and abort after 40 s; 2 processes x 4 devices over gloo ran 16 in
  flight and hung at 32). A host running ahead of a long log interval queues that many.
  `done(output)` picks outputs that are never donated later (a train step's metrics, not its
  state): their being ready marks the call's end. On one CPU device (no collectives) and on
  TPUs and GPUs, which keep their full queue, `fn` is returned as is.
  """
  if jax.default_backend() != "cpu" or jax.device_count() == 1:
    return fn
  running = collections.deque()

  def bounded(*args, **kwargs):
    out = fn(*args, **kwargs)
    running.append(done(out))
    if len(running) > limit:
      jax.block_until_ready(running.popleft())
    return out

  return bounded


def process_values(value: float) -> list[float]:
  """[value of process 0, value of process 1, ...]; a collective, so every process calls it."""
  gathered = multihost_utils.process_allgather(np.asarray(value, np.float32))
  return [float(v) for v in np.reshape(gathered, -1)]


@contextlib.contextmanager
def exit_promptly_on_error():
  """With several processes, an exception ends this process at once with status 1.

  A plain exit would wait in `jax.distributed`'s shutdown barrier (up to 5 minutes) for
  processes that may be blocked in a collective with this one, so the failure would not
  reach the launcher or scheduler.
  """
  try:
    yield
  except Exception:  # noqa: BLE001 -- reported in full, then the process ends.
    if jax.process_count() == 1:
      raise
    traceback.print_exc()
    print(f"process {jax.process_index()} failed; exiting without waiting for the others.",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)
