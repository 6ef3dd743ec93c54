"""Partitioning overhead of the trainer's step, and its peak memory under gradient accumulation.

    python benchmarks/sharding_overhead.py [--batch 1024] [--repeats 30]

1. Step time of the same global batch on a 1-device mesh (`jax.devices()[:1]`) and on 8
   simulated CPU devices (data parallel, and FSDP 2x4), measured in one process, interleaved,
   as the median over repetitions. The 8 devices share the machine's cores, so the ratio is
   the cost of partitioning (collectives, smaller kernels, dispatch), not a speed-up.
2. Compiled temp memory (`memory_analysis().temp_size_in_bytes`) of one step at global batch
   micro x k, split into k accumulation steps, against the same batch unsplit: accumulation
   must keep it flat in k.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from big_batch import configs, tasks  # noqa: E402
from big_batch.data.datasets import Dataset  # noqa: E402
from big_batch.parallel import mesh as mesh_lib  # noqa: E402
from big_batch.parallel import sharding as sharding_lib  # noqa: E402
from big_batch.train import loop  # noqa: E402

DATA = Dataset(splits={}, num_classes=10, input_shape=(40,))
MESHES = {  # name -> (mesh config, sharding, devices)
    "1 device": (dict(data=1, fsdp=1, seq=1), "replicated", 1),
    "8 devices, data parallel (8x1)": (dict(data=8, fsdp=1, seq=1), "replicated", 8),
    "8 devices, FSDP (2x4)": (dict(data=2, fsdp=4, seq=1), "fsdp", 8),
}


def _config(batch, accumulation_steps=1, mesh=None, sharding="replicated"):
  config = configs.get("mnist1d_cnn")
  config.evals = {}
  config.batch.size = batch
  config.batch.accumulation_steps = accumulation_steps
  config.mesh = mesh or dict(data=1, fsdp=1, seq=1)
  config.sharding = sharding
  return config


def _batch(rows, seed=0):
  rng = np.random.default_rng(seed)
  return {"input": rng.normal(size=(rows, 40)).astype(np.float32),
          "label": rng.integers(0, 10, rows).astype(np.int32)}


class _Runner:
  """One mesh's trainer state and donated step, timed one step at a time."""

  def __init__(self, config, devices):
    self.mesh = mesh_lib.create(config.mesh, jax.devices()[:devices])
    setup = loop.setup(config, self.mesh, tasks.build(config, DATA, self.mesh, 1000))
    self.step = setup.train_step
    with jax.set_mesh(self.mesh):
      self.state = setup.init(jax.random.key(0))
    self.batch = jax.device_put(_batch(config.batch.size),
                                sharding_lib.batch_sharding(self.mesh))

  def seconds(self) -> float:
    with jax.set_mesh(self.mesh):
      start = time.perf_counter()
      self.state, metrics = self.step(self.state, self.batch)
      jax.block_until_ready(metrics)
    return time.perf_counter() - start


def step_times(batch: int, repeats: int) -> dict:
  runners = {name: _Runner(_config(batch, mesh=mesh, sharding=sharding), devices)
             for name, (mesh, sharding, devices) in MESHES.items()}
  times = {name: [] for name in runners}
  for repeat in range(repeats + 3):  # 3 warm-up rounds (compilation, allocator).
    for name, runner in runners.items():
      seconds = runner.seconds()
      if repeat >= 3:
        times[name].append(seconds)
  return {name: statistics.median(t) for name, t in times.items()}


def temp_bytes(batch: int, accumulation_steps: int) -> int:
  config = _config(batch, accumulation_steps)
  mesh = mesh_lib.create(config.mesh, jax.devices()[:1])
  setup = loop.setup(config, mesh, tasks.build(config, DATA, mesh, 1000))
  state = jax.eval_shape(setup.task.init, jax.random.key(0))
  batch_shapes = jax.eval_shape(lambda: _batch(batch))
  with jax.set_mesh(mesh):
    compiled = setup.train_step.lower(state, batch_shapes).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=1024, help="global batch of the timing")
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--micro", type=int, default=256, help="micro-batch of the memory table")
  args = parser.parse_args()
  print(f"jax {jax.__version__}, {os.cpu_count()} CPU cores shared by 8 simulated devices; "
        f"model: configs/mnist1d_cnn.py (CNN1D 25-25-25, BN, AdamW)\n")

  medians = step_times(args.batch, args.repeats)
  reference = medians["1 device"]
  print(f"Step time, global batch {args.batch}, median of {args.repeats} interleaved steps")
  print("| mesh | ms / step | ratio to 1 device |")
  print("|---|---|---|")
  for name, seconds in medians.items():
    print(f"| {name} | {1e3 * seconds:.2f} | {seconds / reference:.2f} |")

  print(f"\nCompiled temp memory of one step (1 device), micro-batch {args.micro}")
  print("| accumulation steps k | global batch | temp MiB, k micro-batches | "
        "temp MiB, unsplit | ratio accumulated / k=1 |")
  print("|---|---|---|---|---|")
  base = None
  for k in (1, 2, 4, 8, 16):
    accumulated = temp_bytes(args.micro * k, k)
    unsplit = temp_bytes(args.micro * k, 1)
    base = base or accumulated
    print(f"| {k} | {args.micro * k} | {accumulated / 2**20:.2f} | {unsplit / 2**20:.2f} | "
          f"{accumulated / base:.2f} |")


if __name__ == "__main__":
  main()
