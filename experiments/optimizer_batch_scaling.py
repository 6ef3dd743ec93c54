"""Do LAMB and LARS hold accuracy as the batch grows? (You et al. 2017, 2020), small.

    python experiments/optimizer_batch_scaling.py [--epochs 5] [--seeds 2] \
        [--workdir /tmp/optimizer_batch_scaling]

MNIST-1D large (40000 train / 10000 test), the CNN of configs/mnist1d_lamb.py (3 conv layers of
25 channels, batch norm), every batch of BATCHES for the same number of epochs, so a batch
twice as large takes half the steps. Each optimizer's base learning rate is tuned at the
smallest batch on a half-decade grid (1, 3, 10, ... x 10^k), extended while the best value is
at an edge, by the final training loss of seed 0 (the test split plays no part in tuning);
larger batches scale it by the optimizer's rule from `batch.base_size` with a linear warmup
of WARMUP_EPOCHS, then cosine decay to 0 (one schedule for all, so only the optimizer
differs):
  sgd (linear)   momentum 0.9, wd 1e-4           linear rule (Goyal et al. 2017)
  sgd (sqrt)     the same, square-root rule      (Hoffer et al. 2017)
  adamw          wd 0.01                          sqrt (Hoffer et al. 2017)
  lars           the paper's ratio, eta 1e-3, momentum 0.9, wd 1e-4          sqrt
  lamb           wd 0.01                          sqrt (You et al. 2020)
  novograd       b1 0.95, b2 0.98, wd 1e-3        sqrt
Weight decay (and for LARS and LAMB the trust ratio) skips biases and norm parameters
(`exclude_bias_and_norm`). The claim under test: LAMB and LARS degrade less than SGD and AdamW.

One workdir per cell: a rerun skips finished cells (the trainer returns their summary) and a
diverged cell keeps its `diverged.json`, so an interrupted sweep resumes where it stopped.
Seeds run outermost, so a cut-short sweep has every cell for its first seeds. Two seeds by
default: on 2 cores shared with other jobs (load average 9-14 during the run) the tuning and
two seeds took 44 minutes of cell wall time, and a third seed would have pushed the sweep
past an hour.

Measured (results/optimizer_batch_scaling/table.md): the claim fails at this scale. Up to batch
256 every optimizer stays within 0.4 points of its batch-64 accuracy; at 4096 (48 steps) and
8192 (24 steps) AdamW degrades least (82.3%, 54.3%), LAMB and LARS (61.1/60.9%, 20.7/19.1%) no
less than SGD with the square-root rule (59.0%, 27.8%) and NovoGrad; SGD with the linear rule
fails from batch 1024 on. With a fixed number of epochs the largest batches take only tens of
steps, so the limit is the number of updates, not gradient noise; and the learning rate that
the batch-64 tuning and the square-root rule give LAMB (0.24 at 4096: a 24% change of each
kernel per step) is too large for so few steps: configs/mnist1d_lamb.py at 4096 reaches 98.4%
in 20 epochs with a third of it, 75.1% with it. Writes
results/optimizer_batch_scaling/table.md and plot.png.
"""
import argparse
import dataclasses
import json
import math
import os
import time

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from big_batch import optim, train  # noqa: E402
from big_batch.configs import mnist1d_lamb as recipe  # noqa: E402
from big_batch.train.loop import NonFiniteLossError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "optimizer_batch_scaling")
NUM_TRAIN = 40000
BATCHES = (64, 256, 1024, 4096, 8192)
WARMUP_EPOCHS = 1.0
MASK = "exclude_bias_and_norm"

# Each optimizer's fixed hyperparameters, and where its learning-rate grid starts: the
# exponent k of GRID(k) = (1 or 3) x 10^(k // 2), three values from there.
OPTIMIZERS = {
    "sgd": (dict(name="sgd", momentum=0.9, weight_decay=1e-4, weight_decay_mask=MASK), -4),
    "adamw": (dict(name="adamw", weight_decay=0.01, weight_decay_mask=MASK), -6),
    "lars": (dict(name="lars", momentum=0.9, trust_coefficient=1e-3, ratio="mlperf",
                  weight_decay=1e-4, weight_decay_mask=MASK, trust_ratio_mask=MASK), -1),
    "lamb": (dict(name="lamb", weight_decay=0.01, weight_decay_mask=MASK,
                  trust_ratio_mask=MASK), -5),
    "novograd": (dict(name="novograd", b1=0.95, b2=0.98, weight_decay=1e-3,
                      weight_decay_mask=MASK), -6),
}
GRID_SIZE = 3
MAX_EXTENSIONS = 2


@dataclasses.dataclass(frozen=True)
class Line:
  optimizer: str
  rule: str

  @property
  def name(self) -> str:
    return f"{self.optimizer} ({self.rule})" if self.optimizer == "sgd" else self.optimizer


LINES = (Line("sgd", "linear"), Line("sgd", "sqrt"), Line("adamw", "sqrt"), Line("lars", "sqrt"),
         Line("lamb", "sqrt"), Line("novograd", "sqrt"))


def grid_value(k: int) -> float:
  """The half-decade ladder ..., 0.1, 0.3, 1, 3, 10, ...: (1 or 3) x 10^(k // 2)."""
  return float(f"{(1 if k % 2 == 0 else 3) * 10.0 ** (k // 2):.1g}")


def steps_of(batch: int, epochs: float) -> int:
  return int(epochs * NUM_TRAIN) // batch


def config_of(line: Line, base_lr: float, batch: int, seed: int, epochs: float):
  """configs/mnist1d_lamb.py with the line's optimizer, batch, learning rate and epochs."""
  config = recipe.get_config()
  steps = steps_of(batch, epochs)
  hyper, _ = OPTIMIZERS[line.optimizer]
  config.optimizer = dict(
      hyper, learning_rate=base_lr, schedule="cosine", end_value=0.0,
      warmup_steps=max(1, round(WARMUP_EPOCHS * NUM_TRAIN / batch)))
  # At the base batch every rule gives the base learning rate: one run serves all rules.
  config.batch = dict(size=batch, accumulation_steps=1, base_size=BATCHES[0],
                      lr_scaling=line.rule if batch != BATCHES[0] else "none")
  config.seed = seed
  config.num_epochs = float(epochs)
  config.log_every = max(1, steps // 10)
  config.checkpoint_every = steps  # Save and evaluate at the end only.
  config.evals = dict(test=dict(every=steps, split="test", batch_size=1000))
  return config


def workdir_of(root: str, line: Line, base_lr: float, batch: int, seed: int) -> str:
  rule = f"-{line.rule}" if batch != BATCHES[0] else ""
  return os.path.join(root, line.optimizer, f"lr{base_lr:g}", f"b{batch}{rule}", f"seed{seed}")


class Sweep:
  """Runs cells (or reads finished ones) and prints progress with an ETA."""

  def __init__(self, root: str, epochs: float):
    self.root, self.epochs = root, epochs
    self.seconds = {}  # batch -> wall seconds of the cells of that batch run so far
    # workdir -> wall seconds of its run: the sweep's time, counting a cell that serves
    # several lines (the tuned one, the base batch of both SGD rules) once.
    self.wall_times = {}

  def cell(self, line: Line, base_lr: float, batch: int, seed: int) -> dict:
    workdir = workdir_of(self.root, line, base_lr, batch, seed)
    diverged = os.path.join(workdir, "diverged.json")
    if os.path.exists(diverged):
      with open(diverged) as f:
        result = json.load(f)
      self.wall_times[workdir] = result["wall_time"]
      return result
    config = config_of(line, base_lr, batch, seed, self.epochs)
    start = time.perf_counter()
    try:
      summary = train.run(config, workdir)
      result = {"accuracy": summary["evals"]["test"]["accuracy"],
                "train_loss": summary["train"]["loss"], "steps": summary["total_steps"],
                "wall_time": summary["wall_time_seconds"], "diverged": False}
    except NonFiniteLossError as error:
      result = {"accuracy": float("nan"), "train_loss": float("inf"),
                "steps": steps_of(batch, self.epochs), "diverged": True,
                "wall_time": time.perf_counter() - start, "error": str(error)}
      with open(diverged, "w") as f:
        json.dump(result, f)
    self.seconds.setdefault(batch, []).append(result["wall_time"])
    self.wall_times[workdir] = result["wall_time"]
    return result

  def eta(self, remaining: list[int]) -> str:
    """Seconds left for cells of the given batches, from the cells run so far."""
    if not self.seconds:
      return "?"
    overall = np.mean([s for v in self.seconds.values() for s in v])
    total = sum(np.mean(self.seconds[b]) if b in self.seconds else overall for b in remaining)
    return f"{total / 60:.1f} min"


def tune(sweep: Sweep, optimizer: str) -> tuple[float, list[tuple[float, dict]]]:
  """The base learning rate of lowest final training loss at the smallest batch, seed 0."""
  _, start = OPTIMIZERS[optimizer]
  line = Line(optimizer, "none")
  ks = list(range(start, start + GRID_SIZE))
  results = {}
  for _ in range(MAX_EXTENSIONS + 1):
    for k in ks:
      if k not in results:
        results[k] = sweep.cell(line, grid_value(k), BATCHES[0], seed=0)
        print(f"tune {optimizer} lr={grid_value(k):g}: train loss "
              f"{results[k]['train_loss']:.4f}, test accuracy {results[k]['accuracy']:.4f}",
              flush=True)
    best = min(results, key=lambda k: results[k]["train_loss"])
    if best == min(ks):
      ks.insert(0, best - 1)
    elif best == max(ks):
      ks.append(best + 1)
    else:
      break
  return grid_value(best), [(grid_value(k), results[k]) for k in sorted(results)]


def mean_std(values: list[float]) -> str:
  finite = [v for v in values if not math.isnan(v)]
  diverged = len(values) - len(finite)
  if not finite:
    return f"diverged ({diverged}/{len(values)})"
  text = f"{100 * np.mean(finite):.2f} ± {100 * np.std(finite):.2f}"
  return text + (f" ({diverged}/{len(values)} diverged)" if diverged else "")


def write_table(path: str, results: dict, base_lrs: dict, tuning: dict, epochs: float,
                seeds: int, total_minutes: float) -> None:
  batches = " | ".join(str(b) for b in BATCHES)
  lines = [
      f"LAMB and LARS against SGD and AdamW as the batch grows, MNIST-1D large ({NUM_TRAIN} "
      f"train / 10000 test), CNN 25-25-25 with batch norm (running-statistics momentum 0.9), "
      f"{epochs:g} epochs at every batch (fixed epochs: batch B takes "
      f"{NUM_TRAIN * epochs:g}/B steps), linear warmup over {WARMUP_EPOCHS:g} epoch then "
      f"cosine decay to 0; base learning rate tuned at batch {BATCHES[0]} (seed 0, lowest "
      f"final training loss) and scaled by each line's rule. Seeds: {seeds} per cell, mean ± "
      f"std of the final test accuracy (%). 1 CPU device on 2 cores shared with other jobs; "
      f"the sweep took {total_minutes:.0f} min of wall time, tuning "
      "included (5 epochs and 25 channels chosen to fit well under an hour; a third seed did "
      "not fit at this load).",
      "",
      f"| optimizer | rule | base lr (batch {BATCHES[0]}) | {batches} |",
      "|---|---|---|" + "---|" * len(BATCHES),
  ]
  for line in LINES:
    cells = " | ".join(mean_std([r["accuracy"] for r in results[line][b]]) for b in BATCHES)
    lines.append(f"| {line.name} | {line.rule} | {base_lrs[line.optimizer]:g} | {cells} |")
  lines += ["", "Peak learning rate, steps and mean wall time per run (s) at each batch:", "",
            f"| optimizer | {batches} |", "|---|" + "---|" * len(BATCHES)]
  for line in LINES:
    cells = []
    for b in BATCHES:
      config = config_of(line, base_lrs[line.optimizer], b, 0, epochs)
      lr = optim.peak_learning_rate(config.optimizer, config.batch)
      wall = np.mean([r["wall_time"] for r in results[line][b]])
      cells.append(f"lr {lr:.3g}, {steps_of(b, epochs)} steps, {wall:.0f} s")
    lines.append(f"| {line.name} | " + " | ".join(cells) + " |")
  lines += ["", f"Tuning at batch {BATCHES[0]}, seed 0 (final training loss / test accuracy %):",
            "", "| optimizer | learning rate: train loss / test accuracy |", "|---|---|"]
  for optimizer, rows in tuning.items():
    cells = ", ".join(
        f"{lr:g}: " + ("diverged" if r["diverged"] else
                       f"{r['train_loss']:.4f} / {100 * r['accuracy']:.2f}")
        for lr, r in rows)
    lines.append(f"| {optimizer} | {cells} |")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def plot(path: str, results: dict, epochs: float) -> None:
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for line in LINES:
    accs = [[r["accuracy"] for r in results[line][b]] for b in BATCHES]
    means = [np.nanmean(a) if not all(map(math.isnan, a)) else np.nan for a in accs]
    stds = [np.nanstd(a) if not all(map(math.isnan, a)) else np.nan for a in accs]
    ax.errorbar(BATCHES, 100 * np.array(means), yerr=100 * np.array(stds), marker="o",
                capsize=3, label=line.name,
                linestyle="--" if line.optimizer in ("sgd", "adamw") else "-")
  ax.set_xscale("log", base=2)
  ax.set_xticks(BATCHES, [str(b) for b in BATCHES])
  ax.set_xlabel("batch size (fixed epochs: fewer steps to the right)")
  ax.set_ylabel("final test accuracy (%)")
  ax.set_title(f"MNIST-1D large, CNN, {epochs:g} epochs; lr tuned at batch {BATCHES[0]}, scaled")
  ax.grid(True, alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=float, default=5.0)
  parser.add_argument("--seeds", type=int, default=2)
  parser.add_argument("--workdir", default="/tmp/optimizer_batch_scaling")
  parser.add_argument("--results", default=RESULTS)
  args = parser.parse_args()
  os.makedirs(args.results, exist_ok=True)
  sweep = Sweep(args.workdir, args.epochs)
  start = time.perf_counter()

  base_lrs, tuning = {}, {}
  for optimizer in OPTIMIZERS:
    base_lrs[optimizer], tuning[optimizer] = tune(sweep, optimizer)
    print(f"tuned {optimizer}: base learning rate {base_lrs[optimizer]:g} at batch "
          f"{BATCHES[0]}", flush=True)

  cells = [(seed, line, batch) for seed in range(args.seeds) for line in LINES
           for batch in BATCHES]
  results = {line: {b: [] for b in BATCHES} for line in LINES}
  for i, (seed, line, batch) in enumerate(cells):
    result = sweep.cell(line, base_lrs[line.optimizer], batch, seed)
    results[line][batch].append(result)
    print(f"[{i + 1}/{len(cells)}] {line.name} batch {batch} seed {seed}: test accuracy "
          f"{result['accuracy']:.4f}{' (diverged)' if result['diverged'] else ''}; "
          f"ETA {sweep.eta([b for _, _, b in cells[i + 1:]])}", flush=True)
  minutes = sum(sweep.wall_times.values()) / 60
  print(f"this invocation: {(time.perf_counter() - start) / 60:.1f} min", flush=True)
  write_table(os.path.join(args.results, "table.md"), results, base_lrs, tuning, args.epochs,
              args.seeds, minutes)
  plot(os.path.join(args.results, "plot.png"), results, args.epochs)
  print(open(os.path.join(args.results, "table.md")).read())


if __name__ == "__main__":
  main()
