"""Steps/s of the trainer on the default config vs a bare jitted loop, in the same process.

The trainer's figure includes everything a run does after its first log interval (which
holds the compile): the grain input pipeline, metric transfers and files, evaluations and
asynchronous checkpoints at the config's cadence. The bare loop trains the same model with
the same optimizer on the same in-memory arrays (a numpy gather per step, a jitted step with
donated state) and nothing else. Runs alternate, so machine load affects both alike.

    python benchmarks/trainer_overhead.py [--repeats 2]
"""
import argparse
import os
import tempfile
import time

import jax
import numpy as np

from big_batch import configs, tasks, train
from big_batch.data import datasets
from big_batch.parallel import mesh as mesh_lib
from big_batch.train.metrics import read_jsonl


def trainer_steps_per_second(config) -> float:
  with tempfile.TemporaryDirectory() as workdir:
    train.run(config, workdir)
    records = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))
               if "train/examples_per_second" in r]
  # Skip the first interval: it holds the compile.
  steps = np.diff([r["step"] for r in records])
  seconds = steps * config.batch.size / np.array(
      [r["train/examples_per_second"] for r in records[1:]])
  return steps.sum() / seconds.sum()


def bare_steps_per_second(config) -> float:
  data = datasets.load(config.data)
  num_steps = config.num_steps
  task = tasks.build(config, data, mesh_lib.create(config.mesh), num_steps)
  step_fn = jax.jit(task.train_step, donate_argnums=0)
  state = task.init(jax.random.key(config.seed))
  arrays = data.train.read(np.arange(data.train.num_examples))
  n, b = data.train.num_examples, config.batch.size
  epochs = -(-num_steps // (n // b))
  order = np.concatenate([np.random.default_rng(e).permutation(n)[: n // b * b]
                          for e in range(epochs)])
  state, _ = step_fn(state, {k: v[order[:b]] for k, v in arrays.items()})  # Compile.
  jax.block_until_ready(state)
  start = time.perf_counter()
  for i in range(1, num_steps):
    idx = order[i * b:(i + 1) * b]
    state, _ = step_fn(state, {k: v[idx] for k, v in arrays.items()})
  jax.block_until_ready(state)
  return (num_steps - 1) / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  config = configs.get("mnist1d_cnn")
  print(f"default config: {config.model.name} norm={config.model.norm}, batch {config.batch.size}"
        f", {config.num_steps} steps, {jax.device_count()} device(s), log every "
        f"{config.log_every}, eval every {config.evals.test.every}, checkpoint every "
        f"{config.checkpoint_every}")
  trainer, bare = [], []
  for _ in range(args.repeats):
    trainer.append(trainer_steps_per_second(config))
    bare.append(bare_steps_per_second(config))
  t, b = np.median(trainer), np.median(bare)
  print(f"{'':>10} {'steps/s (median)':>18} {'runs':>30}")
  print(f"{'trainer':>10} {t:>18.0f} {str([round(x) for x in trainer]):>30}")
  print(f"{'bare loop':>10} {b:>18.0f} {str([round(x) for x in bare]):>30}")
  print(f"trainer / bare loop = {t / b:.2f} (goal >= 0.8)")


if __name__ == "__main__":
  main()
