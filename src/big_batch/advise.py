"""What to change in a config tuned at one batch size to train at another, and why.

    python -m big_batch.advise --config configs/mnist1d_cnn.py --batch 4096 \\
        [--measure [--from_workdir RUN]] [--devices 8] [--max_micro_batch 512] \\
        [--output overrides.txt]

prints the learning rate, weight decay, warmup, budget and gradient accumulation for batch B
(the config's `batch.size` B0 being the batch it was tuned at), each with the rule it comes
from, and the `--config.*` overrides to paste after the same command. The rules:

  learning rate  linear in B for SGD and LARS, sqrt for Adam(W), LAMB and NovoGrad (Granziol,
                 Zohren & Roberts 2022; Goyal et al. 2017; You et al. 2020); with --measure,
                 the curvature transfer lr = lr_0 (lambda_0 / lambda)^p from lambda_max of the
                 batch Hessians at B0 and B, and for SGD the stability cap 2(1 + mu)/lambda;
  weight decay   the AdamW timescale tau = B / (eta lambda D) kept (Wang & Aitchison 2024;
                 Bergsma et al. 2025): lambda = lambda_0 (B / B0)(eta_0 / eta);
  budget         the same examples (D fixed, as the timescale rule assumes): steps x B0 / B;
  warmup         the same fraction of the run, i.e. the same examples: steps x B0 / B;
  accumulation   micro-batches of at most --max_micro_batch rows per device (default: the
                 base run's rows per device, which are known to fit).

--measure evaluates, at initialization or at the last checkpoint of `--from_workdir` (a run
of this config; batch-norm models should be measured there), lambda_max of the batch Hessian
at B0 and B (Lanczos, the mean over 3 sampled batches each) and the gradient noise scale
B_simple from the gradient norms at B0 and B (McCandlish et al. 2018), whose steps-examples
trade-off says how far past the critical batch B is. Config overrides as for big_batch.main
(`--config.optimizer.learning_rate=...`).
"""
import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from big_batch import optim, tasks
from big_batch.checks import ConfigError
from big_batch.data import datasets
from big_batch.parallel import mesh as mesh_lib
from big_batch.scaling import noise_scale
from big_batch.scaling.learning_rate import (max_learning_rate, scale_learning_rate,
                                            transfer_by_curvature)
from big_batch.train import init_from, loop, validate
from big_batch.train.batch_plan import BatchPlan

# Which batch-size rule an optimizer follows: SGD-like linear, adaptive (per-coordinate or
# per-layer normalized) square root.
RULE_OF = {"sgd": "linear", "lars": "linear", "adamw": "sqrt", "lamb": "sqrt",
           "novograd": "sqrt"}
REFERENCE_OF = {"linear": "Goyal et al. 2017; Granziol et al. 2022 for SGD",
                "sqrt": "Granziol et al. 2022 for Adam; You et al. 2020 for LAMB"}


@dataclasses.dataclass(frozen=True)
class Evidence:
  """Measurements at the base batch B0 and the target batch B (rows capped at the data)."""
  base_rows: int
  target_rows: int
  lambda_max_base: float
  lambda_max_target: float
  b_simple: float
  where: str


@dataclasses.dataclass(frozen=True)
class Item:
  """One piece of advice: a config field, its value, the rule, and what was measured."""
  name: str
  field: str | None
  value: object
  rule: str
  evidence: str = ""


def _round_down_to(value: int, multiple: int) -> int:
  return max(multiple, value // multiple * multiple)


def measure(config, batch: int, workdir: str | None = None, draws: int = 3) -> Evidence:
  """lambda_max of the batch Hessian at B0 and `batch` (the mean over `draws` sampled batches:
  at small B it varies from batch to batch), and B_simple from the gradient norms at the two,
  at initialization or at the last checkpoint of `workdir` (a run of `config`)."""
  base = config.batch.size
  data = datasets.load(config.data)
  mesh = mesh_lib.create(config.mesh)
  shards = mesh_lib.shards(mesh)
  rows = data.train.num_examples
  target_rows = _round_down_to(min(batch, rows), shards)
  big = max(base, target_rows)
  # The noise scale from the norms at the two sizes (the smaller one dividing the larger).
  small = next((s for s in range(min(base, target_rows), 0, -1)
                if big % s == 0 and s % shards == 0 and s < big), None)
  if small is None:
    raise ConfigError(f"--batch={batch}: measuring needs two batch sizes, and {base} and "
                      f"{target_rows} rows (the training split holds {rows}) do not give a "
                      f"smaller one divisible by the {shards} devices")
  probe = config.copy_and_resolve_references()
  with probe.unlocked():
    probe.evals = {
        "base": dict(kind="hessian", every=1, batch_size=base, order=30),
        "target": dict(kind="hessian", every=1, batch_size=target_rows, order=30),
        "noise": dict(kind="noise_scale", every=1, batch_size=big, small_batch_size=small,
                      num_batches=2),
    }
    if workdir is not None:
      probe.init_from = dict(workdir=workdir, paths=("params", "model_state"), step=None)
  validate(probe, jax.device_count())
  total_steps = BatchPlan(probe, rows, 1).total_steps()
  task = tasks.build(probe, data, mesh, total_steps)
  placed = loop.setup(probe, mesh, task)
  with jax.set_mesh(mesh):
    state = placed.init(jax.random.key(probe.seed))
    where = "initialization"
    if workdir is not None:
      state, step = init_from.warm_start(state, placed.abstract_state, probe.init_from)
      where = f"step {step} of {workdir}"
    sharpness = {name: np.mean([task.evaluators[name]({**state, "step": jnp.asarray(d)})[
        "lambda_max"] for d in range(draws)]) for name in ("base", "target")}
    noise = task.evaluators["noise"](state)
  return Evidence(base, target_rows, float(sharpness["base"]), float(sharpness["target"]),
                  noise["b_simple"], where)


def _accumulation(config, batch: int, shards: int, max_micro_batch: int | None) -> int:
  """The fewest micro-batches k, dividing each device's rows, that keep a device's micro-batch
  at most `max_micro_batch` rows (default: the config's, or the base run's rows per device)."""
  base_rows = config.batch.size // shards // config.batch.get("accumulation_steps", 1)
  cap = max_micro_batch or config.batch.get("max_micro_batch") or base_rows
  per_device = batch // shards
  k = max(1, -(-per_device // cap))
  while per_device % k:
    k += 1
  return k


def advise(config, batch: int, devices: int | None = None, evidence: Evidence | None = None,
           max_micro_batch: int | None = None) -> list[Item]:
  """The advice for training `config` (tuned at batch `config.batch.size`) at `batch` on
  `devices` (default: this machine's), with `evidence` from `measure` if given."""
  if batch <= 0:
    raise ConfigError(f"--batch={batch} must be a positive integer")
  base = config.batch.size
  opt = config.optimizer
  rule = RULE_OF.get(opt.name, "sqrt")
  devices = devices or jax.device_count()
  shards = mesh_lib.shards(mesh_lib.axis_sizes(config.mesh, devices))
  if batch % shards:
    raise ConfigError(f"--batch={batch} is not divisible by the {shards} devices the batch is "
                      "split over")
  base_lr = optim.peak_learning_rate(opt, config.batch)
  lr = scale_learning_rate(base_lr, base, batch, rule)
  lr_rule = f"{rule} in B from {base_lr:.4g} at batch {base} ({REFERENCE_OF[rule]})"
  lr_evidence = ""
  if evidence is not None:
    curvature_lr = transfer_by_curvature(base_lr, evidence.lambda_max_base,
                                         evidence.lambda_max_target, rule)
    lr_evidence = (f"lambda_max(H_B) {evidence.lambda_max_base:.4g} at {evidence.base_rows} "
                   f"rows -> {evidence.lambda_max_target:.4g} at {evidence.target_rows} "
                   f"({evidence.where}); the rule alone gives {lr:.4g}")
    lr, lr_rule = curvature_lr, (f"curvature transfer lr_0 (lambda_0/lambda)^"
                                 f"{1 if rule == 'linear' else 0.5} (Granziol et al. 2022)")
    if opt.name == "sgd":
      cap = max_learning_rate(evidence.lambda_max_target, opt.get("momentum", 0.9))
      if lr > cap:
        lr, lr_rule = cap, f"SGD stability cap 2(1 + momentum)/lambda_max(H_B) = {cap:.4g}"
  items = [Item("batch size", "batch.size", batch, f"target (tuned at {base})"),
           Item("learning-rate base", "batch.base_size", batch,
                "the learning rate below is for this batch"),
           Item("learning-rate rule", "batch.lr_scaling", "none", "set explicitly below"),
           Item("learning rate", "optimizer.learning_rate", float(f"{lr:.4g}"), lr_rule,
                lr_evidence)]
  weight_decay = opt.get("weight_decay") or 0.0
  if weight_decay:
    wd = weight_decay * (batch / base) * (base_lr / lr)
    items.append(Item("weight decay", "optimizer.weight_decay", float(f"{wd:.4g}"),
                      f"timescale B/(eta lambda D) of {weight_decay:g} at {base} kept "
                      "(Bergsma et al. 2025)"))
  if config.get("num_steps") is not None:
    items.append(Item("steps", "num_steps", max(1, round(config.num_steps * base / batch)),
                      f"same examples as {config.num_steps} steps at {base}"))
  else:
    budget = "num_epochs" if config.get("num_epochs") is not None else "num_examples"
    items.append(Item("budget", None, "unchanged", f"{budget} already fixes the data"))
  warmup = opt.get("warmup_steps") or 0
  if warmup:
    new_warmup = max(1, round(warmup * base / batch))
    items.append(Item("warmup steps", "optimizer.warmup_steps", new_warmup,
                      f"same examples (and fraction of the run) as {warmup} steps at {base}"))
  k = _accumulation(config, batch, shards, max_micro_batch)
  base_rows = base // shards // config.batch.get("accumulation_steps", 1)
  items.append(Item("accumulation", "batch.accumulation_steps", k,
                    f"{batch // shards // k} rows per device per micro-batch on {shards} "
                    f"devices (the base run: {base_rows})"))
  if evidence is not None:
    ratio = noise_scale.steps_ratio(batch, evidence.b_simple) / noise_scale.steps_ratio(
        base, evidence.b_simple)
    examples = noise_scale.examples_ratio(batch, evidence.b_simple) / noise_scale.examples_ratio(
        base, evidence.b_simple)
    items.append(Item("noise scale", None, float(f"{evidence.b_simple:.4g}"),
                      "B_simple = tr(Sigma)/|G|^2 from gradient norms at B0 and B "
                      "(McCandlish et al. 2018)",
                      f"to reach the base run's loss: {ratio:.3g}x its steps and "
                      f"{examples:.3g}x its examples (S = S_min(1 + B_noise/B)); "
                      + ("B is past the critical batch: the fixed-data budget above will "
                         "likely reach a higher loss" if batch > evidence.b_simple else
                         "B is below the critical batch: near-linear speed-up")))
  return items


def overrides(items: list[Item]) -> str:
  """The `--config.<field>=<value>` flags of the advice."""
  return " ".join(f"--config.{item.field}={item.value}" for item in items if item.field)


def report(items: list[Item], title: str) -> str:
  lines = [title]
  width = max(len(item.name) for item in items)
  for item in items:
    lines.append(f"  {item.name:<{width}}  {item.value!s:<10}  {item.rule}")
    if item.evidence:
      lines.append(f"  {'':<{width}}  {'':<10}  measured: {item.evidence}")
  lines += ["", "Overrides to paste:", "  " + overrides(items)]
  return "\n".join(lines)


def _define_flags():
  """Defined when run as a program only: big_batch.main defines --config too."""
  config_flags.DEFINE_config_file("config", None, "The base config (tuned at its batch.size).",
                                  lock_config=True)
  flags.DEFINE_integer("batch", None, "The target global batch size.")
  flags.DEFINE_bool("measure", False, "Measure the batch Hessians' lambda_max and the noise "
                    "scale at B0 and B (at initialization, or --from_workdir).")
  flags.DEFINE_string("from_workdir", None, "A run of this config to measure at (its last "
                      "checkpoint).")
  flags.DEFINE_integer("devices", None, "Devices the target run has (default: this machine's).")
  flags.DEFINE_integer("max_micro_batch", None, "Rows per device that fit in memory (default: "
                       "the base run's).")
  flags.DEFINE_string("output", None, "Also write the overrides to this file.")
  flags.mark_flags_as_required(["config", "batch"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  FLAGS = flags.FLAGS
  try:
    evidence = (measure(FLAGS.config, FLAGS.batch, FLAGS.from_workdir) if FLAGS.measure
                else None)
    items = advise(FLAGS.config, FLAGS.batch, FLAGS.devices, evidence, FLAGS.max_micro_batch)
  except ConfigError as error:
    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(2)
  title = (f"Batch {FLAGS.batch} for {config_flags.get_config_filename(FLAGS['config'])} "
           f"(tuned at batch {FLAGS.config.batch.size}, optimizer {FLAGS.config.optimizer.name}):")
  print(report(items, title), flush=True)
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      f.write(overrides(items) + "\n")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
