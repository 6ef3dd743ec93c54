"""ConAdv (Liu et al. 2022) at small scale: vanilla vs DisAdv vs ConAdv from small to large batch.

    python experiments/conadv.py [--epochs 5] [--seeds 0,1] [--batches 256,2048,8192]
                                 [--width 8] [--workdir /tmp/conadv] [--dataset mnist1d]

The model and recipe of configs/mnist1d_conadv.py: MNIST-1D large (40000 train / 10000
test), the 1-D ResNet-20 with batch norm, LAMB with the learning rate given at batch 128
scaled by sqrt(B / 128), cosine decay after a warm-up of 10% of the updates, FGSM in an l-inf
ball. Per batch size and seed:
  vanilla  supervised training (tasks/supervised.py);
  DisAdv   adversarial training, the perturbation from the current weights (staleness 0);
  ConAdv   the perturbation from the weights one step old (staleness 1).
Every cell makes the same updates on the same batches: E epochs' worth of steps, plus the
one step with which ConAdv fills its pipeline (tasks/conadv.py). Train accuracy is measured
after training, in eval mode on clean inputs, like test accuracy; the generalization gap is
their difference. Step time is the median over the run's log intervals after the first
(compilation) of batch / examples per second. The claim under test: at the largest batch
ConAdv narrows the gap (as DisAdv does) at near-vanilla step cost.

Each cell runs in its own workdir under --workdir and resumes there (a finished cell is read
back, not rerun). `--dataset cifar10` runs the 2-D ResNet-20 on CIFAR-10 where tfds has it
prepared in --data_dir (nothing is downloaded). Writes results/conadv/table.md and plot.png.
"""
import argparse
import json
import os
import statistics
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from big_batch import optim, train  # noqa: E402
from big_batch.configs import mnist1d_conadv as recipe  # noqa: E402
from big_batch.train.metrics import read_jsonl  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "conadv")
METHODS = ("vanilla", "DisAdv", "ConAdv")
NUM_TRAIN = {"mnist1d": 40000, "cifar10": 50000}
COST = {"vanilla": 1.0, "DisAdv": 2.0, "ConAdv": 2.0}  # Relative step cost, for the ETA.


def config_of(method: str, batch: int, seed: int, args):
  """configs/mnist1d_conadv.py for one cell: the same updates whatever the method."""
  config = recipe.get_config()
  config.seed = seed
  config.batch.size = batch
  config.model.width = args.width
  if args.dataset == "cifar10":
    config.data = dict(name="cifar10", data_dir=args.data_dir, in_memory=True,
                       input_key="image", label_key="label")
  elif args.data_dir:
    config.data.data_dir = args.data_dir
  updates = max(1, int(args.epochs * NUM_TRAIN[args.dataset] // batch))
  config.optimizer.learning_rate = args.learning_rate
  config.optimizer.warmup_steps = max(1, updates // 10)
  config.adversary.epsilon = args.epsilon
  if method == "vanilla":
    config.task = "supervised"
    del config.adversary
  else:
    config.adversary.staleness = 1 if method == "ConAdv" else 0
    if method == "DisAdv":
      config.adversary.concurrency = None
  config.num_epochs = None
  config.num_steps = updates + (1 if method == "ConAdv" else 0)
  config.log_every = max(1, config.num_steps // 10)
  config.checkpoint_every = max(1, config.num_steps // 4)
  every = config.num_steps  # Evaluate at the end only.
  config.evals = dict(test=dict(every=every, split="test", batch_size=2000),
                      train=dict(every=every, split="train", batch_size=2000))
  return config


def step_seconds(workdir: str) -> float:
  """Median of batch / examples-per-second over the log intervals after the first."""
  records = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))
             if "train/examples_per_second" in r]
  rates = [r["train/batch_size"] / r["train/examples_per_second"] for r in records[1:]]
  return statistics.median(rates) if rates else float("nan")


def run_cells(args) -> dict:
  """{(method, batch, seed): summary with 'step_seconds'}, running what is not finished."""
  cells = [(m, b, s) for s in args.seeds for b in args.batches for m in METHODS]
  cost = {c: COST[c[0]] * args.epochs for c in cells}
  total, done_cost, start = sum(cost.values()), 0.0, time.perf_counter()
  out = {}
  for i, (method, batch, seed) in enumerate(cells):
    workdir = os.path.join(args.workdir, f"{method}_b{batch}_s{seed}")
    config = config_of(method, batch, seed, args)
    summary = train.run(config, workdir)
    summary["step_seconds"] = step_seconds(workdir)
    summary["learning_rate"] = optim.peak_learning_rate(config.optimizer, config.batch)
    out[(method, batch, seed)] = summary
    done_cost += cost[(method, batch, seed)]
    elapsed = time.perf_counter() - start
    eta = elapsed / done_cost * (total - done_cost)
    print(f"[{i + 1}/{len(cells)}] {method} batch {batch} seed {seed}: test "
          f"{summary['evals']['test']['accuracy']:.4f} train "
          f"{summary['evals']['train']['accuracy']:.4f}, {1e3 * summary['step_seconds']:.1f} "
          f"ms/step; {elapsed / 60:.1f} min so far, ETA {eta / 60:.1f} min", flush=True)
  return out


def _stats(values):
  return float(np.mean(values)), float(np.std(values))


def table(results: dict, args) -> str:
  seeds = ", ".join(str(s) for s in args.seeds)
  lines = [
      f"ConAdv (Liu et al. 2022) at small scale: {args.dataset} "
      f"({NUM_TRAIN[args.dataset]} train), ResNet-20 "
      f"({'1-D' if args.dataset == 'mnist1d' else '2-D'}, width {args.width}, batch norm), LAMB (learning rate {args.learning_rate:g} at batch "
      f"{recipe.BASE_BATCH}, sqrt-scaled; cosine, 10% warm-up; weight decay 1e-4), FGSM l-inf "
      f"eps = {args.epsilon:g}; {args.epochs:g} epochs of updates at every batch size, "
      f"chosen so the {len(results)} runs fit in ~45 min on 2 shared CPU cores; seeds {seeds}, "
      "mean +- std over seeds. Accuracies in eval mode on clean inputs after the last update; "
      "gap = train - test. Step time: median ms per step on 1 CPU device (2 cores shared "
      "with other jobs), and its ratio to vanilla at the same batch.",
      "",
      "| batch | method | updates | peak lr | test acc | train acc | gap | step ms | "
      "step / vanilla |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for batch in args.batches:
    vanilla_ms = np.mean([results[("vanilla", batch, s)]["step_seconds"] for s in args.seeds])
    for method in METHODS:
      runs = [results[(method, batch, s)] for s in args.seeds]
      test = _stats([r["evals"]["test"]["accuracy"] for r in runs])
      trained = _stats([r["evals"]["train"]["accuracy"] for r in runs])
      gap = _stats([r["evals"]["train"]["accuracy"] - r["evals"]["test"]["accuracy"]
                    for r in runs])
      ms = np.mean([r["step_seconds"] for r in runs])
      updates = runs[0]["total_steps"] - (1 if method == "ConAdv" else 0)
      lines.append(
          f"| {batch} | {method} | {updates} | {runs[0]['learning_rate']:.3g} | "
          f"{test[0]:.4f} +- {test[1]:.4f} | {trained[0]:.4f} +- {trained[1]:.4f} | "
          f"{gap[0]:+.4f} +- {gap[1]:.4f} | {1e3 * ms:.1f} | {ms / vanilla_ms:.2f} |")
  return "\n".join(lines) + "\n"


def plot(results: dict, args, path: str) -> None:
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  panels = (
      ("test accuracy", lambda r: r["evals"]["test"]["accuracy"]),
      ("generalization gap (train - test accuracy)",
       lambda r: r["evals"]["train"]["accuracy"] - r["evals"]["test"]["accuracy"]),
      ("step time / vanilla step time", None),
  )
  for ax, (title, value) in zip(axes, panels):
    for method in METHODS:
      means, stds = [], []
      for batch in args.batches:
        runs = [results[(method, batch, s)] for s in args.seeds]
        if value is None:
          vanilla = np.mean([results[("vanilla", batch, s)]["step_seconds"]
                             for s in args.seeds])
          values = [r["step_seconds"] / vanilla for r in runs]
        else:
          values = [value(r) for r in runs]
        means.append(np.mean(values))
        stds.append(np.std(values))
      ax.errorbar(args.batches, means, yerr=stds, marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
  fig.suptitle(f"ConAdv vs DisAdv vs vanilla, {args.dataset} ResNet-20 (width {args.width}), "
               f"LAMB, {args.epochs:g} epochs, seeds {', '.join(map(str, args.seeds))}")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=float, default=5)
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--batches", default="256,2048,8192")
  parser.add_argument("--width", type=int, default=8, help="the ResNet's first-stage channels")
  parser.add_argument("--learning_rate", type=float, default=recipe.LEARNING_RATE,
                      help=f"LAMB's peak learning rate at batch {recipe.BASE_BATCH}")
  parser.add_argument("--epsilon", type=float, default=recipe.EPSILON)
  parser.add_argument("--dataset", choices=sorted(NUM_TRAIN), default="mnist1d")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--workdir", default="/tmp/conadv")
  parser.add_argument("--results", default=RESULTS)
  args = parser.parse_args()
  args.seeds = [int(s) for s in args.seeds.split(",")]
  args.batches = [int(b) for b in args.batches.split(",")]
  os.makedirs(args.results, exist_ok=True)
  results = run_cells(args)
  text = table(results, args)
  with open(os.path.join(args.results, "table.md"), "w") as f:
    f.write(text)
  with open(os.path.join(args.results, "runs.json"), "w") as f:
    json.dump({f"{m}_b{b}_s{s}": {"test": r["evals"]["test"], "train": r["evals"]["train"],
                                  "step_seconds": r["step_seconds"],
                                  "total_steps": r["total_steps"]}
               for (m, b, s), r in results.items()}, f, indent=1)
  plot(results, args, os.path.join(args.results, "plot.png"))
  print(text)


if __name__ == "__main__":
  main()
