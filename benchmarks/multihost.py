"""Steps/s of one global batch as 1x8, 2x4 and 4x2 (processes x CPU devices), and the bytes
of the cross-process collectives per step, read from the compiled HLO.

    python benchmarks/multihost.py [--batches 128,2048] [--steps 30]

Each layout runs this file's worker through `big_batch.launch` (1x8 also as a lone process
without `jax.distributed`, the reference): the quick config's CNN with 32 channels (so FSDP
has dimensions divisible by 8 to shard), its jitted train step with donated state, on one
fixed global batch, data parallel (mesh data=8) and FSDP (mesh fsdp=8, ZeRO-3 style), timed
over `--steps` steps after a warm-up step. Step times are compared with 1x8 twice: with the
plain process ("vs 1x8", in-process collectives) and with the 1x8 process under
`jax.distributed` ("vs gloo 1x8", the same gloo collectives as the multi-process layouts, so
the ratio is the cost of the processes alone). The HLO is the same for every layout (one mesh
of 8 devices); which of its collectives cross processes depends on the layout.

Closed forms, per step, for P parameters (float32, 4 bytes each): data parallel all-reduces
the gradients, 4P bytes; FSDP all-gathers the sharded parameters Ps before use (4Ps, once per
use: forward and again in the backward pass if XLA does not keep them) and reduce-scatters
their gradients (4Ps in, 4Ps/8 out per device), and all-reduces the gradients of the
replicated (small) leaves. Batch norm adds all-reduces of per-channel batch statistics, and
the step's metrics a few scalars. The machine limit printed beside the table is the measured
time of one 4-byte all-reduce over the 8 devices: with `jax.distributed`, CPU collectives go
through gloo over TCP, one rank per device, even between devices of one process.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from big_batch import configs, launch, tasks  # noqa: E402
from big_batch.data import datasets, pipeline  # noqa: E402
from big_batch.parallel import distributed  # noqa: E402
from big_batch.parallel import mesh as mesh_lib  # noqa: E402
from big_batch.parallel import sharding as sharding_lib  # noqa: E402

LAYOUTS = [(1, 8, False), (1, 8, True), (2, 4, True), (4, 2, True)]
SHARDINGS = {"data parallel": (dict(data=8), "replicated"), "fsdp": (dict(fsdp=8), "fsdp")}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
DTYPE_BYTES = {"f32": 4, "s32": 4, "u32": 4, "f16": 2, "bf16": 2, "f64": 8, "s64": 8, "u64": 8,
               "pred": 1, "s8": 1, "u8": 1}


# --- HLO: collectives, their bytes and whether they cross processes ---------------------------

def shape_bytes(text: str) -> int:
  """Bytes of every array shape in `text`, e.g. '(f32[25]{0}, f32[3,32,32]{2,1,0})'."""
  return sum(DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
             for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", text)
             if dtype in DTYPE_BYTES)


def replica_groups(line: str, num_devices: int) -> list[list[int]]:
  """The device groups of one collective, from either HLO spelling of `replica_groups`."""
  iota = re.search(r"replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", line)
  if iota:
    shape, dims = [[int(v) for v in g.split(",")] for g in iota.groups()[:2]]
    ids = np.arange(math.prod(dims)).reshape(dims)
    if iota.group(3):
      ids = ids.transpose([int(v) for v in iota.group(3).split(",")])
    return ids.reshape(shape).tolist()
  explicit = re.search(r"replica_groups=\{(.*?)\}(?:,|$)", line)
  groups = re.findall(r"\{([\d,]+)\}", explicit.group(1) + "}") if explicit else []
  return [[int(v) for v in g.split(",")] for g in groups] or [list(range(num_devices))]


def collectives(hlo: str, device_process: list[int]) -> dict:
  """{kind: {'ops', 'operands', 'bytes', 'cross_process_bytes'}}; bytes are the full buffer
  (all-reduce and all-gather: the result; reduce-scatter: the result x group size)."""
  found = {}
  for line in hlo.splitlines():
    match = re.match(r"\s*(?:ROOT )?%\S+ = (.*?) (" + "|".join(COLLECTIVES) + r")(-start)?\(",
                     line)
    if not match:
      continue
    result, kind = match.group(1), match.group(2)
    groups = replica_groups(line, len(device_process))
    size = shape_bytes(result.split("->")[-1] if match.group(3) else result)
    if kind == "reduce-scatter":
      size *= len(groups[0])
    crosses = any(len({device_process[d] for d in group}) > 1 for group in groups)
    entry = found.setdefault(kind, dict(ops=0, operands=0, bytes=0, cross_process_bytes=0))
    entry["ops"] += 1
    entry["operands"] += max(1, len(re.findall(r"\b[a-z]+\d*\[", result)))
    entry["bytes"] += size
    entry["cross_process_bytes"] += size if crosses else 0
  return found


# --- Worker: one process of one layout ------------------------------------------------------

def worker(args) -> None:
  if args.coordinator_address:
    distributed.initialize(coordinator_address=args.coordinator_address,
                           num_processes=args.num_processes, process_id=args.process_id,
                           timeout_seconds=args.initialization_timeout)
  config = configs.get("mnist1d_cnn", "quick")
  config.model.channels = (32, 32, 32)
  config.data.data_dir = args.data_dir
  data = distributed.process_0_first(lambda: datasets.load(config.data), "benchmark_data")
  task = tasks.build(config, data, mesh_lib.create(config.mesh), config.num_steps)
  abstract = jax.eval_shape(task.init, jax.random.key(0))
  results = {"gloo_latency_ms": None, "rows": []}
  for name, (mesh_config, strategy) in SHARDINGS.items():
    mesh = mesh_lib.create(mesh_config)
    device_process = [d.process_index for d in mesh.devices.flat]
    state_sharding = sharding_lib.state_shardings(abstract, mesh, strategy)
    batch_sharding = sharding_lib.batch_sharding(mesh)
    step = jax.jit(task.train_step, in_shardings=(state_sharding, batch_sharding),
                   out_shardings=(state_sharding, sharding_lib.replicated(mesh)),
                   donate_argnums=0)
    bounded_step = distributed.bound_in_flight(step, done=lambda out: out[1])
    params = abstract["params"]
    sharded = sum(math.prod(leaf.shape) for leaf, s in zip(
        jax.tree.leaves(params), jax.tree.leaves(state_sharding["params"]))
        if any(axis is not None for axis in s.spec))
    for batch_size in args.batches:
      rows = pipeline.process_rows(batch_sharding, batch_size)
      indices = np.arange(batch_size) % data.train.num_examples
      batch = pipeline.to_global(data.train.read(indices[rows]), batch_sharding, batch_size)
      state = jax.jit(task.init, out_shardings=state_sharding)(jax.random.key(0))
      compiled = step.lower(state, batch).compile()
      state, _ = step(state, batch)
      jax.block_until_ready(state)
      start = time.perf_counter()
      for _ in range(args.steps):
        state, metrics = bounded_step(state, batch)
      jax.block_until_ready((state, metrics))
      seconds = (time.perf_counter() - start) / args.steps
      results["rows"].append(dict(
          sharding=name, batch=batch_size, ms_per_step=seconds * 1e3,
          params=sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params)),
          sharded_params=sharded, collectives=collectives(compiled.as_text(), device_process)))
    if results["gloo_latency_ms"] is None:
      results["gloo_latency_ms"] = all_reduce_ms(mesh)
  if jax.process_index() == 0:
    with open(args.out, "w") as f:
      json.dump(results, f)


def all_reduce_ms(mesh, repeats: int = 50) -> float:
  """Milliseconds per 4-byte all-reduce over every device of `mesh`."""
  axes = tuple(mesh.axis_names)
  ones = jax.make_array_from_process_local_data(
      NamedSharding(mesh, P(axes)), np.ones(jax.local_device_count(), np.float32),
      (jax.device_count(),))
  total = distributed.bound_in_flight(
      jax.jit(lambda x: x.sum(), out_shardings=NamedSharding(mesh, P())))
  jax.block_until_ready(total(ones))
  start = time.perf_counter()
  for _ in range(repeats):
    out = total(ones)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats * 1e3


# --- Parent: every layout, then the table ---------------------------------------------------

def run_layout(num_processes, devices, joined, args, out) -> dict:
  command = [sys.executable, os.path.abspath(__file__), "--worker", "--out", out,
             "--data_dir", args.data_dir, "--steps", str(args.steps),
             "--batches", ",".join(map(str, args.batches))]
  if joined:
    code = launch.run(command, num_processes, devices, timeout_seconds=900)
  else:
    code = subprocess.run(command, env=launch.process_env(devices), timeout=900).returncode
  if code != 0:
    raise RuntimeError(f"layout {num_processes}x{devices} failed with status {code}")
  with open(out) as f:
    return json.load(f)


def closed_form(row) -> dict:
  """{collective: bytes per step} of the textbook algorithm for this row's sharding."""
  params, sharded = 4 * row["params"], 4 * row["sharded_params"]
  if row["sharding"] == "data parallel":
    return {"all-reduce": params}
  return {"all-gather": sharded, "reduce-scatter": sharded, "all-reduce": params - sharded}


def print_bytes(rows) -> None:
  """HLO bytes per collective beside the closed form (the HLO is the same for every layout)."""
  print("\nbytes per step, compiled HLO vs closed form (P params, Ps of them sharded; 4 B each):")
  for row in rows:
    expected, found = closed_form(row), row["collectives"]
    print(f"  {row['sharding']} (P={row['params']:,}, Ps={row['sharded_params']:,}, "
          f"batch {row['batch']}):")
    for kind in sorted(set(expected) | set(found)):
      hlo = found.get(kind, {}).get("bytes", 0)
      ratio = f"{hlo / expected[kind]:.2f}" if expected.get(kind) else "-"
      print(f"    {kind:<15} HLO {hlo:>9,} B in {found.get(kind, {}).get('ops', 0)} op(s)"
            f"   closed form {expected.get(kind, 0):>9,} B   HLO / closed form {ratio}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")],
                      default=[128, 2048])
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(),
                                                          "big_batch_benchmark_data"))
  parser.add_argument("--worker", action="store_true")
  parser.add_argument("--out")
  for flag in ("coordinator_address", "num_processes", "process_id", "initialization_timeout"):
    parser.add_argument(f"--{flag}", type=str if flag == "coordinator_address" else int)
  args = parser.parse_args()
  if args.worker:
    return worker(args)

  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    for layout in LAYOUTS:
      results[layout] = run_layout(*layout, args, os.path.join(tmp, "out.json"))
  print(f"\nquick CNN (32 channels), same global batch per row; {args.steps} timed steps; "
        f"{os.cpu_count()} CPU cores, shared")
  print(f"{'layout':<22}{'sharding':<15}{'batch':>6}{'ms/step':>9}{'steps/s':>9}"
        f"{'vs 1x8':>8}{'vs gloo 1x8':>13}  cross-process collectives per step "
        "(kind ops: operands, bytes)")
  plain, gloo = ({(r["sharding"], r["batch"]): r["ms_per_step"] for r in results[layout]["rows"]}
                 for layout in LAYOUTS[:2])
  for (num_processes, devices, joined), result in results.items():
    label = f"{num_processes}x{devices}" + (" jax.distributed" if joined else "")
    for row in result["rows"]:
      key, ms = (row["sharding"], row["batch"]), row["ms_per_step"]
      crossing = {k: v for k, v in row["collectives"].items() if v["cross_process_bytes"]}
      described = "; ".join(f"{k} {v['ops']}: {v['operands']}, {v['cross_process_bytes']:,} B"
                            for k, v in crossing.items()) or "none"
      print(f"{label:<22}{row['sharding']:<15}{row['batch']:>6}{ms:>9.1f}{1e3 / ms:>9.1f}"
            f"{ms / plain[key]:>8.2f}{ms / gloo[key]:>13.2f}  {described}")
  print_bytes(results[LAYOUTS[2]]["rows"])
  print("\nmachine limit, one 4-byte all-reduce over the 8 devices: " + ", ".join(
      f"{p}x{d}{' jax.distributed' if joined else ''} {r['gloo_latency_ms']:.2f} ms"
      for (p, d, joined), r in results.items()))

if __name__ == "__main__":
  main()
