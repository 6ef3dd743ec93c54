"""Batch-size sweeps: one config trained at several batch sizes and seeds, one workdir per cell.

    python -m big_batch.sweep --config configs/mnist1d_cnn.py --batch 64,256,1024 \\
        --rule sqrt --seeds 2 --workdir /tmp/sweep [--epochs 20] [--target train/loss<=0.3]

Each cell is `big_batch.train.run` of the config with `batch.size` B, `seed` config.seed + i,
`batch.lr_scaling` the rule (default: the config's own; `batch.base_size`, the batch its
learning rate was tuned at, defaults to the config's batch size) and, for the training-set
accuracy, an evaluator over the 'train' split added next to the config's own. `--epochs` sets
an epochs budget for every cell (fixed data: the usual batch-size comparison); otherwise the
config's budget holds. Cells live in <workdir>/<rule>_b<B>_s<seed>; rerunning resumes an
interrupted cell and returns a finished one's summary (the trainer detects it), so a sweep is
resumable, and extended by adding batch sizes or seeds. `--target metric<=value` (or >=)
records each cell's steps to reach it (a metric of metrics.jsonl, e.g. train/loss or
test/accuracy) and fits the critical batch of S = S_min (1 + B_crit / B) (McCandlish et al.
2018). Writes table.md and plot.png (accuracy, or loss, on the training and held-out splits,
the generalization gap, and steps to target, against the batch) into the workdir or
`--results`. Config overrides as for big_batch.main (`--config.optimizer.learning_rate=...`).

From Python (notebooks, experiments): `rows = big_batch.sweep.run(config, [64, 256], 'sqrt',
seeds=2, workdir='/tmp/sweep')`, then `write_results(rows, directory)`.
"""
import copy
import dataclasses
import io
import json
import os
import re
import sys
import time

import jax
import matplotlib
import numpy as np
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

from big_batch import optim, train  # noqa: E402
from big_batch.checks import ConfigError  # noqa: E402
from big_batch.data import datasets  # noqa: E402
from big_batch.scaling.noise_scale import fit_critical_batch  # noqa: E402
from big_batch.tasks.single_model import kind_of  # noqa: E402
from big_batch.train.batch_plan import BatchPlan  # noqa: E402
from big_batch.train.metrics import read_jsonl  # noqa: E402

TRAIN_EVAL = "train"


@dataclasses.dataclass(frozen=True)
class Target:
  """A threshold on a logged metric: `metric` (e.g. 'train/loss') `op` ('<=' or '>=') value."""
  metric: str
  op: str
  value: float

  @classmethod
  def parse(cls, text: str) -> "Target":
    match = re.fullmatch(r"\s*([\w/.-]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*", text)
    if not match:
      raise ValueError(f"target={text!r} is not 'metric<=value' or 'metric>=value' "
                       "(e.g. 'train/loss<=0.3', 'test/accuracy>=0.9')")
    return cls(match[1], match[2], float(match[3]))

  def reached(self, value: float) -> bool:
    return value <= self.value if self.op == "<=" else value >= self.value

  def __str__(self):
    return f"{self.metric}{self.op}{self.value:g}"


def held_out_eval(config) -> str | None:
  """The first evaluator of `config.evals` over a split other than the training split."""
  for name, section in (config.get("evals") or {}).items():
    if kind_of(name, section) == "split" and section.get("split", name) != "train":
      return name
  return None


def cell_config(config, batch: int, seed: int, rule: str | None = None,
                epochs: float | None = None):
  """`config` at batch size `batch` and `seed`, with `rule` scaling the learning rate from the
  config's tuned batch, an evaluator over the training split, and `epochs` if given."""
  cell = copy.deepcopy(config)
  with cell.unlocked():
    if cell.batch.get("schedule"):
      raise ConfigError(f"config.batch.schedule={cell.batch.schedule!r}: a sweep trains each "
                       "cell at one batch size; clear the schedule")
    cell.batch.base_size = config.batch.get("base_size") or config.batch.size
    cell.batch.size = batch
    if rule is not None:
      cell.batch.lr_scaling = rule
    cell.seed = config.seed + seed
    if epochs is not None:
      cell.num_steps, cell.num_examples, cell.num_epochs = None, None, float(epochs)
    if cell.get("evals") is None:
      cell.evals = {}
    if TRAIN_EVAL not in cell.evals:
      held_out = held_out_eval(cell)
      reference = (cell.evals[held_out] if held_out else
                   {"every": cell.log_every, "batch_size": 256})
      cell.evals[TRAIN_EVAL] = dict(every=reference["every"], split="train",
                                    batch_size=reference["batch_size"])
  return cell


def steps_to_target(metrics_path: str, target: Target) -> int | None:
  """The first logged step whose `target.metric` reaches the target, or None."""
  for record in sorted(read_jsonl(metrics_path), key=lambda r: r["step"]):
    if target.metric in record and target.reached(record[target.metric]):
      return record["step"]
  return None


def _planned_examples(config, num_train: int) -> int:
  return BatchPlan(config, num_train, 1).total_examples()


def _check_cells(cells, num_train: int) -> None:
  """Every cell validates (and its warmup fits its run) before the first one trains."""
  for cell in cells:
    train.validate(cell.config, jax.device_count())
    steps = BatchPlan(cell.config, num_train, 1).total_steps()
    warmup = cell.config.optimizer.get("warmup_steps", 0)
    if warmup > steps:
      raise ConfigError(f"config.optimizer.warmup_steps={warmup} is longer than the "
                        f"{steps} steps of the cell at batch {cell.batch}; lower it "
                        "(--config.optimizer.warmup_steps=...) or raise the budget")


@dataclasses.dataclass
class _Cell:
  batch: int
  seed: int
  workdir: str
  config: object


def _finished_summary(workdir: str) -> dict | None:
  path = epath.Path(workdir) / "summary.json"
  return json.loads(path.read_text()) if path.exists() else None


def _eta(timed: list[tuple[int, float]], left: list[int]) -> str:
  """Seconds left for cells of `left` examples, from the cells timed so far: a fixed cost per
  cell (data, compilation) plus a cost per example, fitted once two cells differ in size."""
  if not left:
    return "ETA 0:00:00"
  if not timed:
    return "ETA unknown"
  examples, seconds = np.array(timed, np.float64).T
  if np.ptp(examples) > 0:
    per_example, fixed = np.polyfit(examples, seconds, 1)
    per_example, fixed = max(per_example, 0.0), max(fixed, 0.0)
  else:
    per_example, fixed = seconds.sum() / examples.sum(), 0.0
  return f"ETA {_duration(fixed * len(left) + per_example * sum(left))}"


def _say(message: str) -> None:
  print(f"sweep: {message}", flush=True)


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run(config, batches, rule: str | None = None, seeds: int = 1, workdir: str = "/tmp/sweep",
        epochs: float | None = None, target: Target | str | None = None) -> list[dict]:
  """Trains `config` at every batch in `batches` for `seeds` seeds; one row per cell.

  A row: {'batch', 'seed', 'workdir', 'learning_rate' (peak), 'steps', 'examples',
  'wall_seconds', 'evals' (every evaluator's final metrics), 'steps_to_target'}.
  """
  if isinstance(target, str):
    target = Target.parse(target)
  if rule is not None and rule not in optim.LR_SCALING_RULES:
    raise ConfigError(f"rule={rule!r} is not one of {optim.LR_SCALING_RULES}")
  name = rule or config.batch.get("lr_scaling", "none")
  cells = [_Cell(b, s, os.path.join(workdir, f"{name}_b{b}_s{s}"),
                 cell_config(config, b, s, rule, epochs))
           for b in batches for s in range(seeds)]
  num_train = datasets.load(config.data).train.num_examples
  _check_cells(cells, num_train)
  work = [_planned_examples(cell.config, num_train) for cell in cells]
  start, timed = time.perf_counter(), []
  rows = []
  for i, cell in enumerate(cells):
    began = time.perf_counter()
    before = _finished_summary(cell.workdir)
    summary = train.run(cell.config, cell.workdir)
    seconds = time.perf_counter() - began
    if summary != before:  # Trained now (not a finished cell): it times the rest.
      timed.append((work[i], seconds))
    rows.append({
        "batch": cell.batch, "seed": cell.config.seed, "workdir": cell.workdir,
        "learning_rate": optim.peak_learning_rate(cell.config.optimizer, cell.config.batch),
        "steps": summary["final_step"], "examples": summary["examples_seen"],
        "wall_seconds": summary["wall_time_seconds"], "evals": summary["evals"],
        "steps_to_target": (steps_to_target(os.path.join(cell.workdir, "metrics.jsonl"), target)
                            if target else None)})
    eta = _eta(timed, work[i + 1:])
    _say(f"cell {i + 1}/{len(cells)} (batch {cell.batch}, seed {cell.config.seed}) done in "
         f"{seconds:.0f} s; elapsed {_duration(time.perf_counter() - start)}, {eta}")
  return rows


def _metric(evals: dict, name: str | None) -> tuple[str, float] | None:
  """('accuracy' or 'loss', value) of evaluator `name`'s final metrics."""
  metrics = evals.get(name or "", {})
  for key in ("accuracy", "loss"):
    if key in metrics:
      return key, metrics[key]
  return None


def summarize(rows: list[dict], held_out: str | None) -> list[dict]:
  """Per batch size: mean and standard deviation over seeds of the train and held-out metric,
  the generalization gap (train - held-out accuracy, or held-out - train loss), steps to
  target."""
  out = []
  for batch in sorted({r["batch"] for r in rows}):
    cells = [r for r in rows if r["batch"] == batch]
    entry = {"batch": batch, "seeds": len(cells), "learning_rate": cells[0]["learning_rate"],
             "steps": cells[0]["steps"], "wall_seconds": float(np.mean([c["wall_seconds"]
                                                                        for c in cells]))}
    train = [_metric(c["evals"], TRAIN_EVAL) for c in cells]
    test = [_metric(c["evals"], held_out) for c in cells]
    if all(train) and all(test):
      kind = train[0][0]
      tr, te = np.array([t[1] for t in train]), np.array([t[1] for t in test])
      gap = tr - te if kind == "accuracy" else te - tr
      entry.update(metric=kind, train=(tr.mean(), tr.std()), held_out=(te.mean(), te.std()),
                   gap=(gap.mean(), gap.std()))
    reached = [c["steps_to_target"] for c in cells if c["steps_to_target"] is not None]
    entry["steps_to_target"] = (float(np.mean(reached)), len(reached)) if reached else None
    out.append(entry)
  return out


def critical_batch(summary: list[dict]):
  """The fit S = S_min (1 + B_crit / B) to the batches that reached the target (2 or more)."""
  reached = [(s["batch"], s["steps_to_target"][0]) for s in summary if s["steps_to_target"]]
  if len(reached) < 2:
    return None
  return fit_critical_batch(*zip(*reached))


def _pm(pair, digits=4) -> str:
  return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def table(rows: list[dict], held_out: str | None, title: str = "",
          target: Target | None = None) -> str:
  """table.md: one line per batch size."""
  summary = summarize(rows, held_out)
  kind = next((s["metric"] for s in summary if "metric" in s), "accuracy")
  lines = [title, ""] if title else []
  header = ["batch", "seeds", "peak lr", "steps", f"train {kind}", f"{held_out} {kind}",
            "gap"]
  if target:
    header.append(f"steps to {target}")
  header.append("wall (s)")
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for s in summary:
    cols = [str(s["batch"]), str(s["seeds"]), f"{s['learning_rate']:.4g}", str(s["steps"])]
    if "metric" in s:
      cols += [_pm(s["train"]), _pm(s["held_out"]), _pm(s["gap"])]
    else:
      cols += ["-", "-", "-"]
    if target:
      reached = s["steps_to_target"]
      cols.append(f"{reached[0]:.0f} ({reached[1]}/{s['seeds']} seeds)" if reached
                  else "not reached")
    cols.append(f"{s['wall_seconds']:.0f}")
    lines.append("| " + " | ".join(cols) + " |")
  fit = critical_batch(summary) if target else None
  if fit is not None:
    lines += ["", f"Fit S = S_min (1 + B_crit / B) to steps to {target}: S_min = "
                  f"{fit.s_min:.1f} ± {fit.s_min_se:.1f}, B_crit = {fit.b_crit:.0f} ± "
                  f"{fit.b_crit_se:.0f} (McCandlish et al. 2018)."]
  lines.append("")
  lines.append("Mean ± standard deviation over seeds; gap = train - held-out accuracy (or "
               "held-out - train loss).")
  return "\n".join(lines) + "\n"


def plot(rows: list[dict], held_out: str | None, path: str, title: str = "",
         target: Target | None = None) -> None:
  """plot.png: metric on both splits, the gap and (with a target) steps to target vs batch."""
  summary = [s for s in summarize(rows, held_out) if "metric" in s]
  panels = 3 if target else 2
  fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8))
  batches = [s["batch"] for s in summary]
  if summary:
    kind = summary[0]["metric"]
    for key, label in (("train", "train"), ("held_out", held_out)):
      axes[0].errorbar(batches, [s[key][0] for s in summary], [s[key][1] for s in summary],
                       marker="o", capsize=3, label=label)
    axes[0].set_ylabel(kind)
    axes[0].legend()
    axes[1].errorbar(batches, [s["gap"][0] for s in summary], [s["gap"][1] for s in summary],
                     marker="o", capsize=3, color="C3")
    axes[1].set_ylabel("generalization gap")
  if target:
    full = summarize(rows, held_out)
    reached = [(s["batch"], s["steps_to_target"][0]) for s in full if s["steps_to_target"]]
    if reached:
      axes[2].plot(*zip(*reached), "o", label="measured")
      fit = critical_batch(full)
      if fit is not None:
        grid = np.geomspace(min(b for b, _ in reached), max(b for b, _ in reached), 100)
        axes[2].plot(grid, fit.s_min * (1 + fit.b_crit / grid), "--",
                     label=f"S_min (1 + B_crit/B), B_crit = {fit.b_crit:.0f}")
      axes[2].set_yscale("log")
      axes[2].legend(fontsize=8)
    axes[2].set_ylabel(f"steps to {target}")
  for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.grid(True, which="both", alpha=0.3)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  buffer = io.BytesIO()  # Through epath: `path` may be on cloud storage.
  fig.savefig(buffer, format="png", dpi=120)
  plt.close(fig)
  epath.Path(path).write_bytes(buffer.getvalue())


def write_results(rows: list[dict], directory: str, config=None, title: str = "",
                  target: Target | str | None = None) -> str:
  """table.md and plot.png of `rows` in `directory` (local or gs://); returns the table."""
  if isinstance(target, str):
    target = Target.parse(target)
  held_out = held_out_eval(config) if config is not None else next(
      (n for n in rows[0]["evals"] if n != TRAIN_EVAL), None)
  directory = epath.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  text = table(rows, held_out, title, target)
  (directory / "table.md").write_text(text)
  plot(rows, held_out, str(directory / "plot.png"), title, target)
  return text


def _batches(values) -> list[int]:
  try:
    batches = [int(v) for v in values]
  except ValueError:
    raise ValueError(f"--batch={','.join(values)} must list positive integers") from None
  if not batches or min(batches) <= 0:
    raise ValueError(f"--batch={','.join(values)} must list positive integers")
  return batches


def _define_flags():
  """The command line's flags; defined when run as a program only, so that importing this
  module next to big_batch.main (which defines --config too) does not clash."""
  config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                  lock_config=True)
  flags.DEFINE_list("batch", None, "Batch sizes, e.g. 64,256,1024.")
  flags.DEFINE_enum("rule", None, ["linear", "sqrt", "none"],
                    "Learning-rate rule from the config's tuned batch (default: the config's "
                    "batch.lr_scaling).")
  flags.DEFINE_integer("seeds", 1, "Seeds per batch size: config.seed, config.seed + 1, ...")
  flags.DEFINE_float("epochs", None, "Epochs budget of every cell (default: the config's "
                     "budget).")
  flags.DEFINE_string("target", None, "Record steps to a target, e.g. train/loss<=0.3.")
  flags.DEFINE_string("workdir", None, "Root directory of the cells' workdirs.")
  flags.DEFINE_string("results", None, "Where table.md and plot.png go (default: --workdir).")
  flags.mark_flags_as_required(["config", "batch", "workdir"])


def _fail(error) -> None:
  print(f"error: {error}", file=sys.stderr, flush=True)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  FLAGS = flags.FLAGS
  try:
    batches = _batches(FLAGS.batch)
    target = Target.parse(FLAGS.target) if FLAGS.target else None
  except ValueError as error:
    _fail(error)
  try:
    rows = run(FLAGS.config, batches, FLAGS.rule, FLAGS.seeds, FLAGS.workdir, FLAGS.epochs,
               target)
  except ConfigError as error:
    _fail(error)
  directory = FLAGS.results or FLAGS.workdir
  overrides = " ".join(f"--config.{k}={v}" for k, v in
                       config_flags.get_override_values(FLAGS["config"]).items())
  rule = FLAGS.rule or FLAGS.config.batch.get("lr_scaling", "none")
  budget = f", {FLAGS.epochs:g} epochs" if FLAGS.epochs else ""
  title = (f"{config_flags.get_config_filename(FLAGS['config'])} {overrides}".strip()
           + f": rule {rule}, {FLAGS.seeds} seed(s){budget}")
  print(write_results(rows, directory, FLAGS.config, title, target), flush=True)
  _say(f"wrote {directory}/table.md and plot.png")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
