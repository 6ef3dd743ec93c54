"""Throughput of the even split vs the planned split on emulated heterogeneous devices.

    python benchmarks/heterogeneous.py [--ratios 1:1,1:2,1:4] [--batch 4096] [--steps 10]

Profiles the training step of configs/mnist1d_heterogeneous.py (the 1-D CNN without batch
norm) on this machine's CPU device for several micro-batch sizes (parallel/planner.py
`measure`: median seconds per micro-batch and XLA's temporary bytes), then, for each speed
ratio, emulates a cluster of one process per device (`big_batch.launch`, one CPU device
each, joined by `jax.distributed`) whose device i is `ratio_i` times slower (tasks/
heterogeneous.py `slowdown`: each micro-batch's gradient computed that many times). Two
splits of the same global batch run there, one after the other, with the same program:

  even     B / n rows per device, the micro-batch the plan chose (plain data parallelism);
  planned  `planner.plan` of the slowed profiles.

Printed per ratio: examples/s of each (median step time over --steps steps after warm-up; the faster of
--repeats alternating launches),
the measured gain planned/even against the ideal sum_i speed_i / (n min_i speed_i), and the
planner's predicted iteration time (compute only) against the measured one; then each
device's bytes of state and batch (the same under both splits: NamedSharding shards are even).
With 2 CPU cores, more than 2 processes share cores and measure the sharing, not the plan.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from big_batch import configs, launch, tasks  # noqa: E402
from big_batch.data.datasets import Dataset  # noqa: E402
from big_batch.parallel import distributed, heterogeneous, planner  # noqa: E402
from big_batch.parallel import mesh as mesh_lib  # noqa: E402
from big_batch.train import loop  # noqa: E402

DATA = Dataset(splits={}, num_classes=10, input_shape=(40,))
MICRO_BATCHES = (16, 32, 64, 128, 256)
MEMORY_BYTES = 4e9  # Per emulated device; the model is far below it.


def _config(rows, micro_batch, slowdown):
  config = configs.get("mnist1d_heterogeneous")
  config.batch.size = sum(rows)
  config.heterogeneous.update(rows=tuple(rows), micro_batch=micro_batch,
                              slowdown=tuple(slowdown))
  config.evals = {}
  return config


def _inputs(rows: int):
  rng = np.random.default_rng(0)
  return {"input": rng.normal(size=(rows, 40)).astype(np.float32),
          "label": rng.integers(0, 10, rows).astype(np.int32)}


# --- Parent: profile, plan, launch, table -----------------------------------------------------

def profile_one_device():
  """The CPU device's profile for the benchmark's model, and the state's bytes."""
  config = _config((MICRO_BATCHES[0],), MICRO_BATCHES[0], (1,))
  config.mesh = dict(data=1, fsdp=1, seq=1)
  mesh = mesh_lib.create(config.mesh, jax.devices()[:1])
  task = tasks.build(config, DATA, mesh, 1000)
  state = task.init(jax.random.key(0))
  params = state["params"]
  state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
  graphdef = _graphdef(config)

  def grad_fn(params, batch):
    from flax import nnx
    from big_batch.tasks import supervised

    def loss(p):
      model = nnx.merge(graphdef, p, state["model_state"])
      return supervised.cross_entropy_and_accuracy(model(batch["input"]),
                                                   batch["label"])[0].sum()
    return jax.grad(loss)(params)

  profile = planner.measure(grad_fn, _inputs(MICRO_BATCHES[-1]), params, MICRO_BATCHES,
                            name="cpu", memory_bytes=MEMORY_BYTES, repeats=15)
  return profile, state_bytes


def _graphdef(config):
  from flax import nnx
  from big_batch import models
  return nnx.split(nnx.eval_shape(lambda: models.build(
      config.model, DATA.input_shape, DATA.num_classes, nnx.Rngs(0))))[0]


def run_split(rows, micro_batch, slowdown, steps, out) -> dict:
  command = [sys.executable, os.path.abspath(__file__), "--worker", "--out", out,
             "--rows", ",".join(map(str, rows)), "--micro_batch", str(micro_batch),
             "--slowdown", ",".join(map(str, slowdown)), "--steps", str(steps)]
  code = launch.run(command, len(rows), 1, timeout_seconds=900)
  if code != 0:
    raise RuntimeError(f"split {rows} failed with status {code}")
  results = []
  for process in range(len(rows)):
    with open(f"{out}.{process}") as f:
      results.append(json.load(f))
  # The step ends on every process together (the gradient's all-reduce): process 0's time.
  return dict(ms_per_step=results[0]["ms_per_step"],
              bytes=[d for r in results for d in r["bytes"]])


def main(args) -> None:
  profile, state_bytes = profile_one_device()
  print("profile of one CPU device (median seconds per micro-batch gradient; XLA temp bytes):")
  for m in profile.sizes:
    print(f"  m={m:>3}: {profile.step_seconds[m] * 1e3:7.3f} ms  "
          f"{profile.activation_bytes[m] / 1e6:7.3f} MB")
  print(f"state (params + AdamW state + step): {state_bytes / 1e6:.3f} MB\n")
  header = ("| speeds | split | rows | micro-batch | accumulation | predicted ms | measured ms | "
            "examples/s |")
  lines = [header, "|---|---|---|---|---|---|---|---|"]
  summary = []
  with tempfile.TemporaryDirectory() as tmp:
    for ratio in args.ratios.split(","):
      slowdown = [int(r) for r in ratio.split(":")]
      slowest = max(slowdown)
      # Speeds relative to the slowest device: speed_i = slowest / slowdown_i.
      profiles = [profile.slowed(k, name=f"x{k}") for k in slowdown]
      best = planner.plan(profiles, args.batch, state_bytes)
      even = planner.even_split(profiles, args.batch, state_bytes, best.micro_batches[0])
      measured = {}
      for attempt in range(args.repeats):  # Alternating, so load from other jobs hits both.
        for name, split in (("even", even), ("planned", best)):
          result = run_split(split.rows, split.micro_batches[0], slowdown, args.steps,
                             os.path.join(tmp, f"{ratio}_{name}_{attempt}.json"))
          if name not in measured or result["ms_per_step"] < measured[name]["ms_per_step"]:
            measured[name] = result
      for name, split in (("even", even), ("planned", best)):
        result = measured[name]
        lines.append(f"| {ratio} | {name} | {split.rows} | {split.micro_batches[0]} | "
                     f"{split.accumulation} | {split.iteration_seconds * 1e3:.1f} | "
                     f"{result['ms_per_step']:.1f} | "
                     f"{args.batch / result['ms_per_step'] * 1e3:.0f} |")
      gain = measured["even"]["ms_per_step"] / measured["planned"]["ms_per_step"]
      ideal = sum(slowest / k for k in slowdown) / (len(slowdown) * 1.0)
      summary.append((ratio, gain, ideal, measured["planned"]["bytes"]))
      print(lines[-2], lines[-1], sep="\n", flush=True)
  print("\n" + "\n".join(lines))
  print("\n| speeds | measured gain planned/even | ideal gain | fraction of ideal |")
  print("|---|---|---|---|")
  for ratio, gain, ideal, _ in summary:
    print(f"| {ratio} | {gain:.2f} | {ideal:.2f} | {gain / ideal:.0%} |")
  print("\nbytes per device (planned split), state | batch block (real rows of it):")
  for ratio, _, _, per_device in summary:
    print(f"  {ratio}: " + "; ".join(f"device {d['device']}: {d['state']:,} | {d['batch']:,} "
                                     f"({d['real_rows']} rows)" for d in per_device))


# --- Worker: one process of one emulated cluster ----------------------------------------------

def worker(args) -> None:
  distributed.initialize(coordinator_address=args.coordinator_address,
                         num_processes=args.num_processes, process_id=args.process_id,
                         timeout_seconds=args.initialization_timeout)
  rows = [int(b) for b in args.rows.split(",")]
  slowdown = [int(k) for k in args.slowdown.split(",")]
  config = _config(rows, args.micro_batch, slowdown)
  mesh = mesh_lib.create(config.mesh)
  task = tasks.build(config, DATA, mesh, 1000)
  setup = loop.setup(config, mesh, task)
  arranged = task.select(None, np.arange(sum(rows)))[1]
  data = _inputs(sum(rows))
  host = {k: v[arranged["index"]] for k, v in data.items()}
  host["weight"] = arranged["weight"]
  batch = {k: jax.make_array_from_callback(v.shape, setup.batch_sharding, lambda i, v=v: v[i])
           for k, v in host.items()}
  with jax.set_mesh(mesh):
    state = setup.init(jax.random.key(0))
    times = []
    for i in range(args.steps + 3):
      start = time.perf_counter()
      state, metrics = setup.train_step(state, batch)
      jax.block_until_ready((state, metrics))
      if i >= 3:  # Compilation and warm-up.
        times.append(time.perf_counter() - start)
  plan = heterogeneous.layout(rows, args.micro_batch)
  per_device = []
  for device in jax.local_devices():
    nbytes = lambda tree: sum(s.data.nbytes for x in jax.tree.leaves(tree)
                              for s in x.addressable_shards if s.device == device)
    index = list(mesh.devices.flat).index(device)
    per_device.append(dict(device=index, state=nbytes(state), batch=nbytes(batch),
                           real_rows=plan.rows[index]))
  with open(f"{args.out}.{jax.process_index()}", "w") as f:
    json.dump(dict(ms_per_step=statistics.median(times) * 1e3, bytes=per_device), f)


def parse():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ratios", default="1:1,1:2,1:4")
  parser.add_argument("--batch", type=int, default=4096)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=2,
                      help="launches of each split, alternating; the fastest is kept")
  parser.add_argument("--worker", action="store_true")
  parser.add_argument("--out")
  parser.add_argument("--rows")
  parser.add_argument("--micro_batch", type=int)
  parser.add_argument("--slowdown")
  parser.add_argument("--coordinator_address")
  parser.add_argument("--num_processes", type=int)
  parser.add_argument("--process_id", type=int)
  parser.add_argument("--initialization_timeout", type=int, default=300)
  return parser.parse_args()


if __name__ == "__main__":
  arguments = parse()
  worker(arguments) if arguments.worker else main(arguments)
