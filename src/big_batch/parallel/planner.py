"""Cephalo's planner: per-device batch, micro-batch, accumulation count and state share.

Guo, Anand, Chen & Daudjee (ICS 2025, "Cephalo: Harnessing Heterogeneous GPU Clusters for
Training Transformer Models", Sec. 4) choose, from profiles of each device, the batch share
b_i, the micro-batch m_i (g_i = ceil(b_i / m_i) accumulation steps) and the share s_i of the
training state that minimize the iteration time

    T = max_i g_i t_i(m_i) + C          (the slowest device's compute, plus exposed
                                         communication C)                              (1)

subject to sum_i b_i = B and, on every device, the memory model

    a_i(m_i) + s_i S <= M_i             (activations of one micro-batch + the state share)  (2)

with sum_i s_i = 1 (S the bytes of parameters, gradients and optimizer state). Compute and
state are decoupled: s_i follows free memory, not b_i.

`plan` solves this exactly for the micro-batch sizes the profiles measured: for each choice
of micro-batches (one common size in `spmd` mode, which is what one JAX program runs,
parallel/heterogeneous.py; every combination otherwise, for clusters small enough to
enumerate), the smallest T is found by bisection over the finite set {k t_i(m_i)} of
candidate times, since device i can compute m_i floor(T / t_i(m_i)) rows within T; the
state is then placed (evenly in `spmd` mode, as a NamedSharding does; by free memory
otherwise) and the plan kept if (2) holds everywhere. Surplus rows are taken one at a time
from the device holding the most, so a homogeneous cluster gets the even split.

Profiles (`DeviceProfile`) come from a file (`load_profiles`, so planning needs no hardware)
or from `measure` on a real device. `python -m big_batch.parallel.planner --profiles F
--batch B` prints the plan as a table and the config overrides that run it.
"""
import dataclasses
import itertools
import json
import math
import sys
import time
from typing import Sequence

import numpy as np

MAX_COMBINATIONS = 200_000


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
  """One device: seconds and activation bytes of one micro-batch's forward and backward, by
  micro-batch size, and the memory it has for training (`memory_bytes`)."""
  name: str
  memory_bytes: float
  step_seconds: dict  # micro-batch size -> seconds
  activation_bytes: dict  # micro-batch size -> bytes

  def __post_init__(self):
    for field in ("step_seconds", "activation_bytes"):
      table = {int(k): float(v) for k, v in getattr(self, field).items()}
      if not table or any(k < 1 or v < 0 for k, v in table.items()):
        raise ValueError(f"device {self.name!r}: {field}={table} needs positive micro-batch "
                         "sizes and non-negative values")
      object.__setattr__(self, field, table)
    if set(self.step_seconds) != set(self.activation_bytes):
      raise ValueError(f"device {self.name!r}: step_seconds and activation_bytes measure "
                       f"different micro-batch sizes ({sorted(self.step_seconds)} vs "
                       f"{sorted(self.activation_bytes)})")
    if not self.memory_bytes > 0:
      raise ValueError(f"device {self.name!r}: memory_bytes={self.memory_bytes} must be positive")

  @property
  def sizes(self) -> list[int]:
    return sorted(self.step_seconds)

  def slowed(self, factor: float, name: str | None = None) -> "DeviceProfile":
    """The same device `factor` times slower (emulated heterogeneity)."""
    return dataclasses.replace(self, name=name or f"{self.name}/{factor:g}",
                               step_seconds={m: t * factor for m, t in self.step_seconds.items()})


@dataclasses.dataclass(frozen=True)
class Plan:
  """Per device: rows b_i, micro-batch m_i, accumulation g_i, state share s_i, and the
  predicted compute seconds and memory bytes; `iteration_seconds` is Eq. (1)."""
  names: tuple[str, ...]
  rows: tuple[int, ...]
  micro_batches: tuple[int, ...]
  accumulation: tuple[int, ...]
  state_shares: tuple[float, ...]
  compute_seconds: tuple[float, ...]
  memory_bytes: tuple[float, ...]
  memory_limits: tuple[float, ...]
  communication_seconds: float

  @property
  def iteration_seconds(self) -> float:
    return max(self.compute_seconds) + self.communication_seconds

  @property
  def global_batch(self) -> int:
    return sum(self.rows)

  def throughput(self) -> float:
    """Predicted examples per second."""
    return self.global_batch / self.iteration_seconds

  def table(self) -> str:
    lines = ["| device | rows b_i | micro-batch m_i | accumulation g_i | state share | "
             "compute s | memory GB (limit) |", "|---|---|---|---|---|---|---|"]
    for i, name in enumerate(self.names):
      lines.append(f"| {name} | {self.rows[i]} | {self.micro_batches[i]} | "
                   f"{self.accumulation[i]} | {self.state_shares[i]:.3f} | "
                   f"{self.compute_seconds[i]:.4g} | {self.memory_bytes[i] / 1e9:.3f} "
                   f"({self.memory_limits[i] / 1e9:.3f}) |")
    lines.append(f"\nPredicted iteration: {self.iteration_seconds:.4g} s (slowest device "
                 f"{max(self.compute_seconds):.4g} s + communication "
                 f"{self.communication_seconds:.4g} s), {self.throughput():.1f} examples/s.")
    return "\n".join(lines)

  def overrides(self) -> str:
    """The config fields of tasks/heterogeneous.py that run this plan (common micro-batch)."""
    if len(set(self.micro_batches)) != 1:
      raise ValueError("one SPMD program needs one micro-batch size; plan with spmd=True")
    return (f"--config.batch.size={self.global_batch} "
            f"--config.heterogeneous.rows='{tuple(self.rows)}' "
            f"--config.heterogeneous.micro_batch={self.micro_batches[0]}")


def _fit_rows(times: Sequence[float], sizes: Sequence[int], batch: int):
  """The smallest T with sum_i m_i floor(T / t_i) >= B, and each device's rows within it,
  trimmed to sum to B (surplus taken from the device with the most rows, one at a time).
  A device too slow to finish a micro-batch within T still gets one row."""
  candidates = sorted({k * t for t, m in zip(times, sizes)
                       for k in range(1, -(-batch // m) + 1)})

  def capacity(limit):
    return [m * math.floor(limit / t * (1 + 1e-12)) for t, m in zip(times, sizes)]

  lo, hi = 0, len(candidates) - 1
  while lo < hi:
    mid = (lo + hi) // 2
    if sum(capacity(candidates[mid])) >= batch:
      hi = mid
    else:
      lo = mid + 1
  rows = capacity(candidates[lo])
  for i in range(len(rows)):  # Every device trains on a row at least (one SPMD program).
    if rows[i] == 0:
      rows[i] = 1
  surplus = sum(rows) - batch
  while surplus > 0:
    i = max(range(len(rows)), key=lambda k: (rows[k], k))
    rows[i] -= 1
    surplus -= 1
  return rows


def _state_shares(free: Sequence[float], even: bool) -> list[float] | None:
  """Shares of the state: 1/n each, or proportional to the free memory after activations
  (None if some device has none left)."""
  if even:
    return [1.0 / len(free)] * len(free)
  if any(f <= 0 for f in free):
    return None
  return [f / sum(free) for f in free]


def plan(profiles: Sequence[DeviceProfile], global_batch: int, state_bytes: float, *,
         spmd: bool = True, communication_seconds: float = 0.0) -> Plan:
  """The plan minimizing Eq. (1) under Eq. (2) (module docstring); raises ValueError naming
  the tightest device when no micro-batch size fits in memory."""
  if global_batch < len(profiles):
    raise ValueError(f"global_batch={global_batch} gives some of the {len(profiles)} devices "
                     "no row")
  if spmd:
    common = sorted(set.intersection(*(set(p.sizes) for p in profiles)))
    if not common:
      raise ValueError("spmd=True needs a micro-batch size every profile measured")
    choices = [(m,) * len(profiles) for m in common]
  else:
    total = math.prod(len(p.sizes) for p in profiles)
    if total > MAX_COMBINATIONS:
      raise ValueError(f"{total} micro-batch combinations: too many to enumerate; use "
                       "spmd=True or profile fewer sizes")
    choices = itertools.product(*(p.sizes for p in profiles))
  best = None
  for sizes in choices:
    sizes = list(sizes)
    free = [p.memory_bytes - p.activation_bytes[m] for p, m in zip(profiles, sizes)]
    shares = _state_shares(free, even=spmd)
    if shares is None:
      continue
    memory = [p.activation_bytes[m] + s * state_bytes for p, m, s in zip(profiles, sizes, shares)]
    if any(used > p.memory_bytes * (1 + 1e-12) for used, p in zip(memory, profiles)):
      continue
    times = [p.step_seconds[m] for p, m in zip(profiles, sizes)]
    rows = _fit_rows(times, sizes, global_batch)
    counts = [-(-b // m) for b, m in zip(rows, sizes)]
    compute = [g * t for g, t in zip(counts, times)]
    candidate = Plan(tuple(p.name for p in profiles), tuple(rows), tuple(sizes), tuple(counts),
                     tuple(shares), tuple(compute), tuple(memory),
                     tuple(p.memory_bytes for p in profiles), communication_seconds)
    if best is None or (candidate.iteration_seconds, -min(sizes)) < (best.iteration_seconds,
                                                                       -min(best.micro_batches)):
      best = candidate
  if best is None:
    tightest = min(profiles, key=lambda p: p.memory_bytes - min(p.activation_bytes.values()))
    raise ValueError(f"no micro-batch size fits: device {tightest.name!r} has "
                     f"{tightest.memory_bytes:.4g} bytes for activations of at least "
                     f"{min(tightest.activation_bytes.values()):.4g} and its state share of "
                     f"{state_bytes:.4g}")
  return best


def even_split(profiles: Sequence[DeviceProfile], global_batch: int, state_bytes: float,
               micro_batch: int, communication_seconds: float = 0.0) -> Plan:
  """The homogeneous baseline: B / n rows per device (the remainder to the first devices),
  one micro-batch size, the state split evenly; no memory check (it is what plain data
  parallelism does)."""
  n = len(profiles)
  rows = [global_batch // n + (i < global_batch % n) for i in range(n)]
  counts = [-(-b // micro_batch) for b in rows]
  compute = [g * p.step_seconds[micro_batch] for g, p in zip(counts, profiles)]
  memory = [p.activation_bytes[micro_batch] + state_bytes / n for p in profiles]
  return Plan(tuple(p.name for p in profiles), tuple(rows), (micro_batch,) * n, tuple(counts),
              (1.0 / n,) * n, tuple(compute), tuple(memory),
              tuple(p.memory_bytes for p in profiles), communication_seconds)


def load_profiles(path: str) -> tuple[list[DeviceProfile], float, float]:
  """(profiles, state_bytes, communication_seconds) from a JSON file:
  {"state_bytes": S, "communication_seconds": C (optional), "devices": [{"name", "memory_bytes",
  "step_seconds": {m: s}, "activation_bytes": {m: bytes}}, ...]}."""
  with open(path) as f:
    record = json.load(f)
  try:
    devices = [DeviceProfile(**d) for d in record["devices"]]
    return devices, float(record["state_bytes"]), float(record.get("communication_seconds", 0))
  except (KeyError, TypeError) as error:
    raise ValueError(f"{path}: not a profile file ({error}); see load_profiles") from error


def save_profiles(path: str, profiles: Sequence[DeviceProfile], state_bytes: float,
                  communication_seconds: float = 0.0) -> None:
  with open(path, "w") as f:
    json.dump({"state_bytes": state_bytes, "communication_seconds": communication_seconds,
               "devices": [dataclasses.asdict(p) for p in profiles]}, f, indent=1)


def measure(grad_fn, example_batch: dict, params, micro_batches: Sequence[int], *,
            name: str, memory_bytes: float, repeats: int = 5) -> DeviceProfile:
  """Profiles `grad_fn(params, micro_batch)` (jitted here) on the default device: the median
  seconds over `repeats` calls per micro-batch size, and the compiled program's temporary
  bytes (XLA's memory analysis: activations and workspace) as the activation memory."""
  import jax  # Host-only users of the planner need no JAX import.
  step = jax.jit(grad_fn)
  seconds, activations = {}, {}
  for m in micro_batches:
    batch = jax.tree.map(lambda x: np.resize(x, (m, *x.shape[1:])), example_batch)
    compiled = step.lower(params, batch).compile()
    analysis = compiled.memory_analysis()
    activations[m] = float(getattr(analysis, "temp_size_in_bytes", 0) or 0)
    jax.block_until_ready(compiled(params, batch))
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(compiled(params, batch))
      times.append(time.perf_counter() - start)
    seconds[m] = float(np.median(times))
  return DeviceProfile(name, memory_bytes, seconds, activations)


def main(argv: Sequence[str]) -> int:
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--profiles", required=True, help="a JSON file (see load_profiles)")
  parser.add_argument("--batch", type=int, required=True, help="the global batch B")
  parser.add_argument("--no_spmd", action="store_true",
                      help="a micro-batch size per device and the state by free memory")
  args = parser.parse_args(argv)
  try:
    profiles, state_bytes, communication = load_profiles(args.profiles)
    best = plan(profiles, args.batch, state_bytes, spmd=not args.no_spmd,
                communication_seconds=communication)
  except (OSError, ValueError) as error:
    print(f"planner: {error}", file=sys.stderr)
    return 2
  print(best.table())
  if not args.no_spmd:
    print(f"\nOverrides for tasks/heterogeneous.py:\n  {best.overrides()}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
