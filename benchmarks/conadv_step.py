"""Step time of vanilla, DisAdv and ConAdv training (tasks/conadv.py), side by side.

    python benchmarks/conadv_step.py [--batches 16,64,256,1024,4096] [--repeats 15]

The trainer's jitted, donated steps (`loop.setup`) on one device for the model of
configs/mnist1d_conadv.py (1-D ResNet-20, LAMB, FGSM): supervised (vanilla), DisAdv
(staleness 0: the attack pass, then the training pass) and ConAdv (staleness 1: both passes in
one step, batched into one vmapped pass, or as two independent passes). Each repetition times
one step of every method in turn (interleaved, so load from other processes falls on all of
them alike); the table holds the medians and the ratios to vanilla and to DisAdv. Small
per-device batches are the large-batch regime, where one pass under-fills the device: there
ConAdv's batched pass should cost well under DisAdv's two passes.
"""
import argparse
import statistics
import time

import jax
import numpy as np

from big_batch import configs, tasks
from big_batch.data.datasets import Dataset
from big_batch.parallel import mesh as mesh_lib
from big_batch.train import loop

DATA = Dataset(splits={}, num_classes=10, input_shape=(40,))
METHODS = {  # name -> (task, adversary overrides)
    "vanilla": ("supervised", {}),
    "DisAdv": ("conadv", dict(staleness=0, concurrency=None)),
    "ConAdv batched": ("conadv", dict(staleness=1, concurrency="batched")),
    "ConAdv independent": ("conadv", dict(staleness=1, concurrency="independent")),
}


def _config(method, batch):
  config = configs.get("mnist1d_conadv")
  task, overrides = METHODS[method]
  config.task = task
  if task == "supervised":
    del config.adversary
  else:
    config.adversary.update(overrides)
  config.evals = {}
  config.batch.size = batch
  config.mesh = dict(data=1, fsdp=1, seq=1)
  return config


class _Runner:
  """One method's state and donated step on one device, timed one step at a time."""

  def __init__(self, config):
    devices = jax.devices()[:1]
    self.mesh = mesh_lib.create(config.mesh, devices)
    self.setup = loop.setup(config, self.mesh, tasks.build(config, DATA, self.mesh, 1000))
    rng = np.random.default_rng(0)
    rows = config.batch.size
    self.batch = jax.device_put(
        {"input": rng.normal(size=(rows, 40)).astype(np.float32),
         "label": rng.integers(0, 10, rows).astype(np.int32)}, self.setup.batch_sharding)
    with jax.set_mesh(self.mesh):
      self.state = self.setup.init(jax.random.key(0))
      for _ in range(3):  # Compile, and leave the first (priming) step of ConAdv behind.
        self.step()

  def step(self) -> float:
    start = time.perf_counter()
    with jax.set_mesh(self.mesh):
      self.state, metrics = self.setup.train_step(self.state, self.batch)
      jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batches", default="16,64,256,1024,4096")
  parser.add_argument("--repeats", type=int, default=15)
  args = parser.parse_args()
  model = configs.get("mnist1d_conadv").model
  print(f"1-D ResNet-{model.depth} (width {model.width}) on [batch, 40] inputs, LAMB, FGSM; "
        f"{jax.devices()[0].platform} x1 ({jax.devices()[0].device_kind}); median of "
        f"{args.repeats} interleaved steps, milliseconds")
  header = (f"{'batch':>6} " + " ".join(f"{m:>19}" for m in METHODS)
            + f" {'DisAdv/van':>10} {'ConAdv/van':>10} {'ConAdv/DisAdv':>13} {'indep/DisAdv':>12}")
  print(header)
  for batch in [int(b) for b in args.batches.split(",")]:
    runners = {m: _Runner(_config(m, batch)) for m in METHODS}
    times = {m: [] for m in METHODS}
    for _ in range(args.repeats):
      for method, runner in runners.items():
        times[method].append(runner.step())
    ms = {m: 1e3 * statistics.median(t) for m, t in times.items()}
    van, dis = ms["vanilla"], ms["DisAdv"]
    con, ind = ms["ConAdv batched"], ms["ConAdv independent"]
    print(f"{batch:>6} " + " ".join(f"{ms[m]:>19.2f}" for m in METHODS)
          + f" {dis / van:>10.2f} {con / van:>10.2f} {con / dis:>13.2f} {ind / dis:>12.2f}",
          flush=True)


if __name__ == "__main__":
  main()
