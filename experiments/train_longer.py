"""Train longer, generalize better (Hoffer, Hubara & Soudry 2017): Table 1 and Fig. 2, small.

    python experiments/train_longer.py [--epochs 10] [--workdir /tmp/train_longer]

MNIST-1D large variant (40000 train / 10000 test), the CNN of configs/mnist1d_ghost_bn.py, SGD
with momentum as the paper's baseline. Table 1's columns, each one fix more than the last:
  SB     batch 128, E epochs, learning rate 0.1, plain batch norm;
  LB     batch 4096, E epochs, same learning rate;
  +LR    and the learning rate scaled by sqrt(4096 / 128);
  +GBN   and Ghost BN over ghost batches of 128;
  +RA    and regime adaptation: 32 E epochs, as many updates as SB.
Fig. 2: ||w_t - w_0|| against log t for several batch sizes at a constant learning rate and no
weight decay (so the distance is the walk of the updates alone), E epochs each.
Writes results/train_longer/table.md and weight_distance.png; runs live in --workdir.
"""
import argparse
import dataclasses
import os
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from big_batch import optim, train  # noqa: E402
from big_batch.configs import mnist1d_ghost_bn as recipe  # noqa: E402
from big_batch.scaling.regime import adaptation_factor  # noqa: E402
from big_batch.train.metrics import read_jsonl  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RESULTS = os.path.join(REPO, "results", "train_longer")
NUM_TRAIN = 40000
DISTANCE_BATCHES = (128, 512, 2048, 4096)


@dataclasses.dataclass(frozen=True)
class Setting:
  name: str
  batch: int
  lr_scaling: str = "none"
  ghost: bool = False
  regime_adaptation: bool = False


TABLE = (
    Setting("SB", recipe.BASE_BATCH),
    Setting("LB", recipe.BATCH),
    Setting("+LR (sqrt)", recipe.BATCH, lr_scaling="sqrt"),
    Setting("+GBN (128)", recipe.BATCH, lr_scaling="sqrt", ghost=True),
    Setting("+RA", recipe.BATCH, lr_scaling="sqrt", ghost=True, regime_adaptation=True),
)


def config_of(setting: Setting, epochs: float, num_logs: int):
  """configs/mnist1d_ghost_bn.py with `setting`'s batch, learning rate, norm and epochs."""
  config = recipe.get_config()
  config.batch.size = setting.batch
  config.batch.lr_scaling = setting.lr_scaling
  if setting.regime_adaptation:
    epochs *= adaptation_factor(recipe.BASE_BATCH, setting.batch)
  config.num_epochs = float(epochs)
  config.model.norm = "ghost" if setting.ghost else "batch"
  config.model.ghost_batch_size = recipe.GHOST_BATCH if setting.ghost else None
  steps = int(epochs * NUM_TRAIN // setting.batch)
  config.log_every = max(1, steps // num_logs)
  config.checkpoint_every = steps  # Evaluate and save at the end only.
  config.evals.test.every = steps
  config.evals.weight_distance.every = config.log_every
  return config


def distance_config(batch: int, epochs: float):
  config = config_of(Setting(f"B={batch}", batch), epochs, num_logs=200)
  config.optimizer.schedule = "constant"
  config.optimizer.weight_decay = 0.0
  return config


def run(config, workdir: str) -> dict:
  shutil.rmtree(workdir, ignore_errors=True)  # A fresh run, not a resumed one.
  summary = train.run(config, workdir)
  print(f"{workdir}: test accuracy {summary['evals']['test']['accuracy']:.4f} "
        f"({summary['wall_time_seconds']:.0f} s)", flush=True)
  return summary


def table(rows: list[tuple[Setting, object, dict]], epochs: float) -> str:
  lines = [
      f"Hoffer et al. 2017 Table 1 at small scale: MNIST-1D large ({NUM_TRAIN} train / 10000 "
      f"test), CNN 25-25-25 with batch norm (running-statistics momentum 0.9), SGD momentum "
      f"0.9, weight decay 1e-4, clip 5, cosine decay, "
      f"base learning rate {recipe.BASE_LEARNING_RATE} at batch {recipe.BASE_BATCH}; "
      f"E = {epochs:g} epochs; one seed (0); 1 CPU device. Each row adds one fix to the row "
      "above it. lr is the peak learning rate (cosine decay to 0 over the run); wall time "
      "includes compilation and data loading, on 2 cores shared with other jobs. "
      "||w_t - w_0|| against log t: weight_distance.png.",
      "",
      "| setting | batch | epochs | steps | lr | final eval accuracy | eval loss | "
      "wall time (s) |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for setting, config, summary in rows:
    lr = optim.peak_learning_rate(config.optimizer, config.batch)
    test = summary["evals"]["test"]
    lines.append(
        f"| {setting.name} | {setting.batch} | {config.num_epochs:g} | "
        f"{summary['total_steps']} | {lr:.3g} | {test['accuracy']:.4f} | "
        f"{test['loss']:.4f} | {summary['wall_time_seconds']:.0f} |")
  return "\n".join(lines) + "\n"


def plot_distances(workdirs: dict[int, str], path: str, epochs: float) -> None:
  fig, (total_ax, first_ax) = plt.subplots(1, 2, figsize=(11, 4))
  for batch, workdir in workdirs.items():
    records = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))
               if "weight_distance/distance" in r]
    steps = [r["step"] for r in records]
    total_ax.plot(steps, [r["weight_distance/distance"] for r in records], label=f"B={batch}")
    first_ax.plot(steps, [r["weight_distance/distance/convs/0/kernel"] for r in records],
                  label=f"B={batch}")
  for ax, title in ((total_ax, "all parameters"), (first_ax, "first layer (convs/0/kernel)")):
    ax.set_xscale("log")
    ax.set_xlabel("update t (log scale)")
    ax.set_ylabel("||w_t - w_0||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
  fig.suptitle(f"Distance from initialization, MNIST-1D CNN, SGD lr "
               f"{recipe.BASE_LEARNING_RATE} constant, {epochs:g} epochs per batch size")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=float, default=recipe.BASE_EPOCHS,
                      help="E, the epochs of the small-batch regime")
  parser.add_argument("--workdir", default="/tmp/train_longer")
  parser.add_argument("--results", default=RESULTS)
  args = parser.parse_args()
  os.makedirs(args.results, exist_ok=True)

  rows = []
  for setting in TABLE:
    config = config_of(setting, args.epochs, num_logs=10)
    workdir = os.path.join(args.workdir, "table", setting.name.strip("+").split()[0])
    rows.append((setting, config, run(config, workdir)))
  with open(os.path.join(args.results, "table.md"), "w") as f:
    f.write(table(rows, args.epochs))

  workdirs = {b: os.path.join(args.workdir, "distance", str(b)) for b in DISTANCE_BATCHES}
  for batch, workdir in workdirs.items():
    run(distance_config(batch, args.epochs), workdir)
  plot_distances(workdirs, os.path.join(args.results, "weight_distance.png"), args.epochs)
  print(open(os.path.join(args.results, "table.md")).read())


if __name__ == "__main__":
  main()
