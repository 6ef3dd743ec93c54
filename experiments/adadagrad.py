"""AdAdaGrad (Lau, Liu & Kolar 2024): adaptive batch sizes against fixed ones, small.

    python experiments/adadagrad.py [--epochs 100] [--workdir /tmp/adadagrad]
    python experiments/adadagrad.py --sweep     # the learning-rate sweep behind LEARNING_RATES

The authors' small examples (timlautk/AdAdaGrad `expt.sh`: MNIST logistic regression from
b_0 = 2 and a 3-layer CNN from b_0 = 8, norm test eta = 0.1, a constant learning rate, a
budget of 100 epochs in samples, the batch capped at the training split) on MNIST-1D
(configs/mnist1d_adadagrad.py: 8192 train / 2048 test), with AdaGrad (`optax.adagrad`) and
AdaGrad-Norm (`optim.adagrad_norm`). For each model and optimizer, at the same sample budget:
  adaptive eta=0.1   the authors' norm test, b_0 -> 8192;
  adaptive eta=1     a looser norm test (the batch grows later);
  fixed 16           a small fixed batch;
  fixed 8192         the whole training split every step.
Learning rates were tuned once at the small fixed batch over 10 epochs (`--sweep`, grids in
SWEEP; results/adadagrad/learning_rates.md) and are shared by every batch regime, as the
authors share theirs. The training loss is the
full training split's, evaluated along the run; the target of a (model, optimizer) pair is the
highest final training loss among its four runs, so every run reaches it.

Writes results/adadagrad/table.md and plot.png (training loss against examples and against
steps, batch size against steps). Each run has its own workdir under --workdir and resumes
there: rerunning the script redoes only unfinished runs.
"""
import argparse
import dataclasses
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from big_batch import train  # noqa: E402
from big_batch.configs import mnist1d_adadagrad as recipe  # noqa: E402
from big_batch.train.metrics import read_jsonl  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "adadagrad")

MODELS = {
    "logistic": dict(name="mlp", hidden=(), norm="none"),
    "cnn": dict(name="cnn1d", channels=(25, 25, 25), norm="none"),
}
INITIAL_BATCH = {"logistic": 2, "cnn": 8}  # The authors' b_0.
# The lowest final training loss of the sweep (`--sweep`): batch 16, 10 epochs, over SWEEP.
SWEEP = {"adagrad": (8e-3, 3e-2, 0.1, 0.3), "adagrad_norm": (0.1, 0.3, 1.0, 3.0, 10.0)}
SWEEP_EPOCHS = 10
LEARNING_RATES = {("logistic", "adagrad"): 0.1, ("cnn", "adagrad"): 0.1,
                  ("logistic", "adagrad_norm"): 3.0, ("cnn", "adagrad_norm"): 10.0}
OPTIMIZERS = {
    # torch.optim.Adagrad's defaults, as the authors' code: no initial accumulator, eps 1e-10
    # on sqrt(v) (optax adds eps under the root).
    "adagrad": dict(name="adagrad", initial_accumulator_value=0.0, eps=1e-20),
    "adagrad_norm": dict(name="adagrad_norm", b0=0.1, eps=1e-10),
}
SMALL, LARGE = 16, recipe.NUM_TRAIN
EVALS_PER_RUN = 80


@dataclasses.dataclass(frozen=True)
class Cell:
  model: str
  optimizer: str
  eta: float | None = None   # None: a fixed batch of `batch` rows.
  batch: int | None = None

  @property
  def regime(self) -> str:
    return f"adaptive eta={self.eta:g}" if self.eta is not None else f"fixed {self.batch}"

  @property
  def name(self) -> str:
    regime = f"eta{self.eta:g}" if self.eta is not None else f"fixed{self.batch}"
    return f"{self.model}_{self.optimizer}_{regime}"


CELLS = [Cell(model, optimizer, **regime)
         for model in MODELS for optimizer in OPTIMIZERS
         for regime in (dict(eta=0.1), dict(eta=1.0), dict(batch=SMALL), dict(batch=LARGE))]


def config_of(cell: Cell, epochs: float):
  """configs/mnist1d_adadagrad.py with the cell's model, optimizer and batch regime."""
  config = recipe.get_config()
  config.model = MODELS[cell.model]
  config.optimizer = dict(OPTIMIZERS[cell.optimizer],
                          learning_rate=LEARNING_RATES[cell.model, cell.optimizer])
  config.num_examples = int(epochs * recipe.NUM_TRAIN)
  if cell.eta is not None:
    config.batch.size = INITIAL_BATCH[cell.model]
    config.adaptive_batch.eta = cell.eta
    config.log_every = 1  # The exact batch-size trace; these runs take a few hundred steps.
    every = 2 if cell.eta < 1 else 5
  else:
    config.task = "supervised"
    del config["adaptive_batch"]
    config.batch = dict(size=cell.batch, max_micro_batch=recipe.MAX_MICRO_BATCH)
    every = max(1, config.num_examples // cell.batch // EVALS_PER_RUN)
    config.log_every = every
  config.evals.train_split.every = every
  config.evals.test.every = 10**9  # At the end only.
  config.checkpoint_every = 5000
  return config


def curves(workdir: str) -> dict:
  """Steps, examples seen and batch sizes of the logged steps, and the training-split loss at
  each evaluation (with the examples seen at its step)."""
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  logged = [r for r in records if "train/batch_size" in r]
  steps = np.array([r["step"] for r in logged])
  seen = np.array([r["train/examples_seen"] for r in logged])
  evals = [r for r in records if "train_split/loss" in r]
  eval_steps = np.array([r["step"] for r in evals])
  return {"steps": steps, "batch_size": np.array([r["train/batch_size"] for r in logged]),
          "eval_steps": eval_steps, "eval_examples": np.interp(eval_steps, steps, seen),
          "eval_loss": np.array([r["train_split/loss"] for r in evals])}


def to_target(curve: dict, target: float) -> str:
  """'steps | examples' at the first evaluation with training loss <= target; '<=' marks a
  hit at the run's first evaluation (reached at or before it)."""
  hits = np.nonzero(curve["eval_loss"] <= target)[0]
  if not len(hits):
    return "not reached | not reached"
  mark = "<= " if hits[0] == 0 else ""
  return (f"{mark}{int(curve['eval_steps'][hits[0]]):,} | "
          f"{mark}{int(curve['eval_examples'][hits[0]]):,}")


def table(results: list, epochs: float) -> str:
  lines = [
      f"AdAdaGrad at small scale: MNIST-1D ({recipe.NUM_TRAIN} train / "
      f"{recipe.NUM_SAMPLES - recipe.NUM_TRAIN} test), budget {epochs:g} epochs "
      f"({int(epochs * recipe.NUM_TRAIN):,} examples), constant learning rate (tuned at batch "
      f"{SMALL}, shared by all regimes), seed 0, 1 CPU device (2 cores shared with other "
      "jobs). Adaptive runs start at the authors' b_0 (2 logistic, 8 CNN); the trainer rounds "
      "sizes up to powers of two, capped at the split. Training loss: the whole training "
      "split's, evaluated along the run; target: the highest final training loss of the "
      "model/optimizer pair (reached by all four). Steps and examples to target are those of "
      "the first evaluation at or below it (evaluations every 2 or 5 steps in adaptive runs, "
      f"every 1/{EVALS_PER_RUN} of the run in fixed ones; <= where that is the run's first). "
      "Wall time includes compiles and "
      "evaluations.",
      "",
      "| model | optimizer | lr | batch | target loss | steps to target | examples to target "
      "| steps | final train loss | test accuracy | final batch | wall (s) |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for cell, summary, curve, target in results:
    lines.append(
        f"| {cell.model} | {cell.optimizer} | {LEARNING_RATES[cell.model, cell.optimizer]:g} "
        f"| {cell.regime} | {target:.4f} | {to_target(curve, target)} | {summary['final_step']:,} "
        f"| {summary['evals']['train_split']['loss']:.4f} "
        f"| {summary['evals']['test']['accuracy']:.4f} | {int(curve['batch_size'][-1])} "
        f"| {summary['wall_time_seconds']:.0f} |")
  return "\n".join(lines) + "\n"


def plot(results: list, path: str) -> None:
  pairs = list(dict.fromkeys((cell.model, cell.optimizer) for cell, *_ in results))
  fig, axes = plt.subplots(len(pairs), 3, figsize=(15, 3.4 * len(pairs)), squeeze=False)
  for row, pair in zip(axes, pairs):
    group = [(cell, curve, target) for cell, _, curve, target in results
             if (cell.model, cell.optimizer) == pair]
    for cell, curve, target in group:
      row[0].plot(curve["eval_examples"], curve["eval_loss"], marker=".", label=cell.regime)
      row[1].plot(curve["eval_steps"], curve["eval_loss"], marker=".", label=cell.regime)
      # Fixed runs log every few steps; their size holds from step 1.
      row[2].step(np.r_[1, curve["steps"]], np.r_[curve["batch_size"][0], curve["batch_size"]],
                  where="post", label=cell.regime)
    for ax in row[:2]:
      ax.axhline(target, color="gray", linestyle=":", linewidth=1, label="target")
      ax.set_ylabel("training loss (whole split)")
    row[0].set_xlabel("examples seen")
    row[1].set_xlabel("step (log scale)")
    row[1].set_xscale("log")
    row[2].set_xlabel("step (log scale)")
    row[2].set_ylabel("batch size")
    row[2].set_xscale("log")
    row[2].set_yscale("log", base=2)
    for ax in row:
      ax.set_title(f"{pair[0]}, {pair[1]}", fontsize=10)
      ax.grid(True, which="both", alpha=0.3)
    row[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def sweep(workdir: str, results: str) -> None:
  """Final losses at batch SMALL over SWEEP_EPOCHS for each learning rate of SWEEP."""
  lines = [f"Learning rates at fixed batch {SMALL}, {SWEEP_EPOCHS} epochs of MNIST-1D "
           f"({recipe.NUM_TRAIN} train), seed 0; * marks the lowest final training loss, "
           "used for every regime of the experiment.", "",
           "| model | optimizer | lr | final train loss | test accuracy |", "|---|---|---|---|---|"]
  for model in MODELS:
    for optimizer, rates in SWEEP.items():
      rows = []
      for lr in rates:
        config = config_of(Cell(model, optimizer, batch=SMALL), SWEEP_EPOCHS)
        config.optimizer.learning_rate = lr
        summary = train.run(config, os.path.join(workdir, "sweep", f"{model}_{optimizer}_{lr:g}"))
        rows.append((lr, summary["evals"]["train_split"]["loss"],
                     summary["evals"]["test"]["accuracy"]))
      best = min(rows, key=lambda row: row[1])[0]
      lines += [f"| {model} | {optimizer} | {lr:g}{' *' if lr == best else ''} | {loss:.4f} "
                f"| {accuracy:.4f} |" for lr, loss, accuracy in rows]
  with open(os.path.join(results, "learning_rates.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=float, default=recipe.EPOCHS)
  parser.add_argument("--workdir", default="/tmp/adadagrad")
  parser.add_argument("--results", default=RESULTS)
  parser.add_argument("--sweep", action="store_true",
                      help="run the learning-rate sweep instead of the experiment")
  args = parser.parse_args()
  os.makedirs(args.results, exist_ok=True)
  if args.sweep:
    sweep(args.workdir, args.results)
    return

  start, spent, done = time.perf_counter(), [], []
  for i, cell in enumerate(CELLS):
    began = time.perf_counter()
    workdir = os.path.join(args.workdir, cell.name)
    summary = train.run(config_of(cell, args.epochs), workdir)
    took = time.perf_counter() - began
    if summary.get("train_seconds_this_run", 0) > 0:
      spent.append(took)  # Runs finished earlier return at once: no estimate from those.
    done.append((cell, summary, curves(workdir)))
    left = len(CELLS) - i - 1
    eta = f"{np.mean(spent) * left / 60:.0f} min" if spent else "unknown"
    print(f"[{i + 1}/{len(CELLS)}] {cell.name}: final train loss "
          f"{summary['evals']['train_split']['loss']:.4f}, test accuracy "
          f"{summary['evals']['test']['accuracy']:.4f}, {summary['final_step']} steps, "
          f"{took:.0f} s; elapsed {(time.perf_counter() - start) / 60:.1f} min, ETA {eta}",
          flush=True)

  targets = {}
  for cell, summary, _ in done:
    key = (cell.model, cell.optimizer)
    targets[key] = max(targets.get(key, -np.inf), summary["evals"]["train_split"]["loss"])
  results = [(cell, summary, curve, targets[cell.model, cell.optimizer])
             for cell, summary, curve in done]
  with open(os.path.join(args.results, "table.md"), "w") as f:
    f.write(table(results, args.epochs))
  plot(results, os.path.join(args.results, "plot.png"))
  print(open(os.path.join(args.results, "table.md")).read())


if __name__ == "__main__":
  main()
