"""Curvature and learning rate vs batch size (Granziol, Zohren & Roberts 2022), and the critical
batch (McCandlish et al. 2018), on the MNIST-1D CNN.

    python experiments/lr_vs_batch.py [--workdir /tmp/lr_vs_batch]

1. Curvature. configs/mnist1d_cnn.py without batch norm (`model.norm='none'`: batch norm
   couples the examples of a batch and makes the loss scale-invariant in the conv weights, so
   a too-large step grows the weights instead of diverging) trained for 2000 steps gives the
   fixed weights. At them, lambda_max of the batch Hessian (the mean loss over B sampled
   training rows; 30 Lanczos steps, scaling/hessian.py) for B = 8 ... 2048, several draws
   each, and of the full-data Hessian (all 4000 rows); fit lambda_max(B) = a + c / B and
   compare a with the full-data value.
2. Largest stable learning rate. From the same weights, 40 steps of plain SGD (no momentum)
   and of Adam (0.9, 0.999; its moments first accumulated over 50 batches of B at rate 0, so
   its preconditioner is the one of batch B) at batch B, 8 learning rates at once (vmapped):
   a grid 4x apart, then 8 rates 2^(1/4) apart below its first divergence. A run diverged if
   its loss on a fixed probe of 512 training rows is ever not finite or above max(2x its
   start, start + 0.1) (catapults that recover count); lr_max(B) is the largest rate below
   the first divergence.
   Fit log lr_max against log B (expected slopes: 1 for SGD, 1/2 for Adam, before
   saturation) and compare SGD's with 2 / lambda_max(H_B).
3. Critical batch. big_batch.sweep over B = 16 ... 1024 (AdamW, the sqrt rule from 1e-2 at
   128, constant learning rate after 20 warmup steps, 2500 steps, train loss logged every 10
   steps, no batch norm) with the noise-scale evaluator: steps to train loss <= 0.4 against
   B, fitted by S = S_min (1 + B_crit / B), against B_simple at the target loss.

Every cell has its own workdir or JSON file under --workdir and is reused when rerun. Writes
results/lr_vs_batch/table.md and plot.png (the sweep's own table and plot in
results/lr_vs_batch/sweep/).
"""
import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from flax import nnx

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from big_batch import configs, models, sweep, tasks, train  # noqa: E402
from big_batch.data import datasets  # noqa: E402
from big_batch.parallel import mesh as mesh_lib  # noqa: E402
from big_batch.scaling import hessian, power_lines  # noqa: E402
from big_batch.scaling.learning_rate import max_learning_rate  # noqa: E402
from big_batch.tasks.common import nnx_model  # noqa: E402
from big_batch.tasks.supervised import cross_entropy_and_accuracy  # noqa: E402
from big_batch.train import init_from, loop  # noqa: E402
from big_batch.train.batch_plan import BatchPlan  # noqa: E402
from big_batch.train.metrics import read_jsonl  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "lr_vs_batch")
CURVATURE_BATCHES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
LR_BATCHES = (8, 16, 32, 64, 128, 256, 512, 1024)
SWEEP_BATCHES = (16, 32, 64, 128, 256, 512, 1024)
# Coarse grids of 8 rates, STEP apart (SGD 2^-9 .. 2^5, Adam 2^-14 .. 2^0), then 8 rates
# STEP^(1/8) apart inside the gap where the coarse grid first diverges.
STEP = 4.0
COARSE = {"sgd": 2.0 ** np.arange(-9, 6, 2), "adam": 2.0 ** np.arange(-14, 1, 2)}
TARGET = "train/loss<=0.4"


def _say(message):
  print(f"lr_vs_batch: {message}", flush=True)


class Eta:
  """Progress over `total` units of work with the rate of those done so far."""

  def __init__(self, total):
    self.total, self.done, self.start = total, 0, time.perf_counter()

  def step(self, units, what):
    self.done += units
    elapsed = time.perf_counter() - self.start
    eta = elapsed / self.done * (self.total - self.done)
    _say(f"{what} ({self.done}/{self.total}); elapsed {elapsed:.0f} s, ETA {eta:.0f} s")


def _cached(path, compute):
  if os.path.exists(path):
    return json.load(open(path)), False
  value = compute()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(value, f)
  os.replace(path + ".tmp", path)
  return value, True


# --- The fixed weights --------------------------------------------------------------------

def weights_config(steps):
  config = configs.get("mnist1d_cnn")
  config.model.norm = "none"
  config.num_steps = steps
  config.checkpoint_every = steps
  config.evals.test.every = steps
  return config


def trained(config, workdir):
  """The task (with a hessian evaluator per batch size) and the state at the end of `workdir`."""
  data = datasets.load(config.data)
  probe = config.copy_and_resolve_references()
  rows = data.train.num_examples
  with probe.unlocked():
    probe.evals = {f"h{b}": dict(kind="hessian", every=1, batch_size=b, order=30)
                   for b in (*CURVATURE_BATCHES, rows)}
    probe.init_from = dict(workdir=workdir, paths=("params", "model_state"), step=None)
  mesh = mesh_lib.create(probe.mesh)
  task = tasks.build(probe, data, mesh, BatchPlan(probe, rows, 1).total_steps())
  placed = loop.setup(probe, mesh, task)
  with jax.set_mesh(mesh):
    state, _ = init_from.warm_start(placed.init(jax.random.key(0)), placed.abstract_state,
                                    probe.init_from)
  return data, mesh, task, state


# --- 1. Curvature vs batch ----------------------------------------------------------------

def curvature(task, mesh, state, rows, workdir, draws):
  """{B: [lambda_max per draw]} (B = rows: the full data, one draw)."""
  out, eta = {}, Eta(sum(draws(b) for b in CURVATURE_BATCHES) + 1)
  for b in (*CURVATURE_BATCHES, rows):
    count = 1 if b == rows else draws(b)

    def compute(b=b, count=count):
      with jax.set_mesh(mesh):
        return [task.evaluators[f"h{b}"]({**state, "step": jnp.asarray(d)})["lambda_max"]
                for d in range(count)]

    out[b], _ = _cached(os.path.join(workdir, "curvature", f"{b}.json"), compute)
    eta.step(count, f"lambda_max(H_{b}) = {np.mean(out[b]):.4g}")
  return out


# --- 2. Largest stable learning rate vs batch ---------------------------------------------

def _train_mode_loss(config, data):
  graphdef, _ = nnx_model(lambda rng: models.build(config.model, data.input_shape,
                                                   data.num_classes, nnx.Rngs(rng)),
                          optax.identity())

  def loss(params, model_state, x, y):
    model = nnx.merge(graphdef, params, model_state)
    model.train()
    logits = model(x)
    new_state = nnx.split(model, nnx.Param, ...)[2].to_pure_dict()
    return cross_entropy_and_accuracy(logits, y)[0].mean(), new_state

  return loss


def _losses(config, data, state, optimizer, batch, seed, lrs, steps):
  """[steps, len(lrs)] losses on a fixed probe of 512 training rows, before each of `steps`
  steps from `state` at each rate (vmapped over the rates)."""
  loss_fn = _train_mode_loss(config, data)
  tx = optax.identity() if optimizer == "sgd" else optax.scale_by_adam(0.9, 0.999, 1e-8)
  k = len(lrs)
  train_split = data.train.read(np.arange(data.train.num_examples))
  probe = np.random.default_rng(99).choice(data.train.num_examples, 512, replace=False)
  probe_x, probe_y = train_split["input"][probe], train_split["label"][probe]

  def step(carry, x, y, lr):
    params, model_state, opt_state = carry
    probe_loss = loss_fn(params, model_state, probe_x, probe_y)[0]
    (_, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, model_state,
                                                                         x, y)
    updates, opt_state = tx.update(grads, opt_state)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return (params, model_state, opt_state), probe_loss

  vstep = _compiled(step, optimizer, batch)
  stack = lambda tree: jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)), tree)
  params, model_state = jax.device_get((state["params"], state["model_state"]))
  rng = np.random.default_rng(seed)  # The same batches for every rate and both stages.
  opt_state = tx.init(params)
  if optimizer == "adam":
    # Adam's moments at batch B first (the weights held): its preconditioner 1/sqrt(v), with
    # v ~ G^2 + sigma^2 / B, is what makes lr_max grow like sqrt(B) (Granziol et al. 2022).
    # A fresh state would start with sign-like steps of size lr whatever the batch.
    moments = _compiled_moments(loss_fn, tx, batch)
    for _ in range(MOMENT_STEPS):
      idx = rng.choice(data.train.num_examples, batch, replace=False)
      opt_state = moments(params, model_state, opt_state, train_split["input"][idx],
                          train_split["label"][idx])
  carry = (stack(params), stack(model_state), stack(opt_state))
  losses = []
  for _ in range(steps):
    idx = rng.choice(data.train.num_examples, batch, replace=False)
    carry, loss = vstep(carry, train_split["input"][idx], train_split["label"][idx],
                        jnp.asarray(lrs, jnp.float32))
    losses.append(np.asarray(loss))
  return np.stack(losses)


_STEPS = {}


def _compiled(step, optimizer, batch):
  key = (optimizer, batch)
  if key not in _STEPS:
    _STEPS[key] = jax.jit(jax.vmap(step, in_axes=(0, None, None, 0)))
  return _STEPS[key]


MOMENT_STEPS = 50
_MOMENTS = {}


def _compiled_moments(loss_fn, tx, batch):
  """(params, model_state, opt_state, x, y) -> opt_state after one update at rate 0."""
  if batch not in _MOMENTS:

    def moments(params, model_state, opt_state, x, y):
      grads = jax.grad(lambda p: loss_fn(p, model_state, x, y)[0])(params)
      return tx.update(grads, opt_state)[1]

    _MOMENTS[batch] = jax.jit(moments)
  return _MOMENTS[batch]


def _first_divergence(losses) -> tuple[int, float]:
  """(index of the first diverged rate, or len; the start loss) of [steps, k] probe losses: a
  rate diverged if its probe loss is ever not finite or above max(2 x start, start + 0.1)
  (a catapult that recovers counts: it is the instability the quadratic model predicts; the
  absolute margin keeps noise at a near-zero training loss from counting)."""
  start = float(losses[0, 0])
  limit = max(2 * start, start + 0.1)
  ok = np.isfinite(losses).all(0) & (np.nan_to_num(losses, nan=np.inf).max(0) <= limit)
  return (int(np.argmin(ok)) if not ok.all() else len(ok)), start


def lr_scan(config, data, state, optimizer, batch, seed, steps=40):
  """The coarse and the fine grid around the first divergence; lr_max and its bracket."""
  coarse = COARSE[optimizer]
  bad, start = _first_divergence(_losses(config, data, state, optimizer, batch, seed, coarse,
                                         steps))
  if bad in (0, len(coarse)):  # The edge is off the grid: report the end, flagged.
    return {"lr_max": float(coarse[max(bad - 1, 0)]), "resolved": False, "start": start}
  fine = coarse[bad - 1] * STEP ** (np.arange(8) / 8)  # [stable, .., < first divergence]
  bad_fine, _ = _first_divergence(_losses(config, data, state, optimizer, batch, seed, fine,
                                          steps))
  return {"lr_max": float(fine[max(bad_fine - 1, 0)]), "resolved": True, "start": start,
          "diverged_at": float(fine[bad_fine] if bad_fine < len(fine) else coarse[bad])}


def lr_max(scan) -> float:
  return scan["lr_max"]


# --- 3. Critical batch ---------------------------------------------------------------------

def sweep_config(steps):
  config = configs.get("mnist1d_cnn")
  config.model.norm = "none"  # As in parts 1 and 2: the noise scale is of the trained loss.
  config.num_steps = steps
  config.optimizer.update(schedule="constant", warmup_steps=20)
  config.batch.lr_scaling = "sqrt"
  config.log_every = 10
  config.checkpoint_every = steps
  config.evals.test.every = steps
  config.evals.noise = dict(kind="noise_scale", every=50, split="train", batch_size=512,
                            small_batch_size=64, num_batches=2)
  return config


def noise_at_target(workdir, metric="train/loss", value=0.4):
  """(step, B_simple) logged nearest the step where `metric` first reaches `value` (None if
  never), and every (step, B_simple) of the run."""
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  noise = [(r["step"], r["noise/b_simple"]) for r in records if "noise/b_simple" in r]
  reached = [r["step"] for r in records if metric in r and r[metric] <= value]
  if not reached:
    return None, noise
  return min(noise, key=lambda sb: abs(sb[0] - reached[0])), noise


# --- Results ------------------------------------------------------------------------------

def _fmt_interval(fit, level=0.95):
  low, high = fit.interval(level)
  return f"{fit.exponent:.2f} [{low:.2f}, {high:.2f}]"


def write(results, curv, scans, sweep_summary, noise, weights_summary, rows, args):
  batches = np.array(CURVATURE_BATCHES)
  means = np.array([np.mean(curv[b]) for b in CURVATURE_BATCHES])
  full = float(curv[rows][0])
  fit = hessian.fit_batch_sharpness(batches, means)
  lines = [
      "# Curvature, learning rate and critical batch vs batch size (MNIST-1D CNN)",
      "",
      f"Fixed weights: configs/mnist1d_cnn.py trained for {args.weights_steps} steps (test "
      f"accuracy {weights_summary['evals']['test']['accuracy']:.4f}), without batch norm. "
      "Batch Hessians: mean loss over B sampled training rows, 30 Lanczos steps with full "
      "reorthogonalization. 1 CPU device, 2 shared cores.",
      "",
      "## 1. lambda_max of the batch Hessian",
      "",
      "| B | draws | lambda_max mean | std | fit a + c/B | 2/lambda_max (SGD lr limit) |",
      "|---|---|---|---|---|---|",
  ]
  for b, m in zip(CURVATURE_BATCHES, means):
    lines.append(f"| {b} | {len(curv[b])} | {m:.4g} | {np.std(curv[b]):.2g} | {fit(b):.4g} | "
                 f"{max_learning_rate(m):.4g} |")
  lines.append(f"| {rows} (full) | 1 | {full:.4g} | - | {fit.full:.4g} (a) | "
               f"{max_learning_rate(full):.4g} |")
  lines += ["", f"Fit lambda_max(B) = a + c/B over B = {CURVATURE_BATCHES[0]}..."
                f"{CURVATURE_BATCHES[-1]}: a = {fit.full:.4g} ± {fit.full_se:.2g}, c = "
                f"{fit.c:.4g} ± {fit.c_se:.2g}; the full-data lambda_max is {full:.4g} "
                f"({(fit.full - full) / fit.full_se:+.1f} standard errors from a).", ""]

  lines += ["## 2. Largest stable learning rate (40 steps from the fixed weights)", "",
            "| B | SGD lr_max (seeds) | 2/lambda_max(H_B) | Adam lr_max (seeds) |",
            "|---|---|---|---|"]
  fits = {}
  for opt in ("sgd", "adam"):
    per_seed = np.array([[lr_max(scans[opt][b][s]) for s in range(args.lr_seeds)]
                         for b in LR_BATCHES])
    scans[opt]["lr_max"] = per_seed
    geo = np.exp(np.log(per_seed).mean(1))
    small = np.array(LR_BATCHES) <= args.fit_upto
    fits[opt] = (power_lines.fit_power_law(np.array(LR_BATCHES)[small], geo[small]),
                 power_lines.fit_power_law(np.array(LR_BATCHES), geo))
  for i, b in enumerate(LR_BATCHES):
    mark = lambda opt, s: "" if scans[opt][b][s]["resolved"] else "*"
    sgd_lr = ", ".join(f"{v:.3g}{mark('sgd', s)}" for s, v in enumerate(scans["sgd"]["lr_max"][i]))
    adam_lr = ", ".join(f"{v:.3g}{mark('adam', s)}"
                        for s, v in enumerate(scans["adam"]["lr_max"][i]))
    limit = max_learning_rate(np.mean(curv[b])) if b in curv else float("nan")
    lines.append(f"| {b} | {sgd_lr} | {limit:.3g} | {adam_lr} |")
  # The slope SGD's limit 2 / lambda_max(H_B) has under the fit a + c/B, over the same range:
  # 1 only where c/B >> a, i.e. B << c/a.
  lr_batches = np.array(LR_BATCHES, np.float64)
  small = lr_batches <= args.fit_upto
  predicted = [power_lines.fit_power_law(lr_batches[m], 2 / fit(lr_batches[m])).exponent
               for m in (small, np.ones_like(small))]
  lines += ["", "Fitted log-log slopes of lr_max (geometric mean over seeds) against B, with "
                "95% t-intervals (grid resolution 2^(1/4); * = edge off the coarse grid). "
                "'2/lambda_max fit' is the slope of 2 / (a + c/B) from part 1 over the same "
                f"range: linear scaling needs B << c/a = {fit.c / fit.full:.0f}.", "",
            f"| optimizer | expected | B <= {args.fit_upto} | all B |", "|---|---|---|---|",
            f"| SGD | 1 | {_fmt_interval(fits['sgd'][0])} | {_fmt_interval(fits['sgd'][1])} |",
            f"| SGD: 2/lambda_max fit | - | {predicted[0]:.2f} | {predicted[1]:.2f} |",
            f"| Adam | 0.5 | {_fmt_interval(fits['adam'][0])} | "
            f"{_fmt_interval(fits['adam'][1])} |", ""]

  fit_knee = sweep.critical_batch(sweep_summary)
  at_target = [n[0][1] for n in noise.values() if n[0] is not None]
  b_simple = float(np.median(at_target))
  lines += ["## 3. Critical batch: steps to train loss <= 0.4", "",
            "CNN without batch norm, AdamW, sqrt rule from lr 1e-2 at B = 128, constant after "
            f"20 warmup steps; {args.sweep_steps} steps; the train loss is the mean over "
            "10-step windows. B_simple: the noise-scale evaluator (2 x 512 rows in parts of "
            "64, every 50 steps) at the logged step nearest the one reaching the target.", "",
            "| B | peak lr | steps to target | B_simple at the target (step) |",
            "|---|---|---|---|"]
  for s in sweep_summary:
    reached = f"{s['steps_to_target'][0]:.0f}" if s["steps_to_target"] else "not reached"
    near = noise[s["batch"]][0]
    shown = f"{near[1]:.0f} ({near[0]})" if near else "-"
    lines.append(f"| {s['batch']} | {s['learning_rate']:.4g} | {reached} | {shown} |")
  if fit_knee is not None:
    lines += ["", f"Fit S = S_min (1 + B_crit / B) (relative least squares): S_min = "
                  f"{fit_knee.s_min:.0f} ± {fit_knee.s_min_se:.0f} steps, B_crit = "
                  f"{fit_knee.b_crit:.0f} ± {fit_knee.b_crit_se:.0f}; noise scale at the "
                  f"target, median over the runs: B_simple = {b_simple:.0f}.", ""]
  with open(os.path.join(results, "table.md"), "w") as f:
    f.write("\n".join(lines))
  _plot(results, curv, fit, full, scans, fits, sweep_summary, fit_knee, b_simple, noise)
  return "\n".join(lines)


def _plot(results, curv, fit, full, scans, fits, sweep_summary, fit_knee, b_simple, noise):
  fig, axes = plt.subplots(1, 4, figsize=(19, 4))
  ax = axes[0]
  for b in CURVATURE_BATCHES:
    ax.plot([b] * len(curv[b]), curv[b], ".", color="C0", alpha=0.5)
  grid = np.geomspace(CURVATURE_BATCHES[0], CURVATURE_BATCHES[-1], 100)
  ax.plot(grid, fit(grid), "-", color="C0", label=f"a + c/B, a = {fit.full:.3g}")
  ax.axhline(full, color="k", ls="--", label=f"full data {full:.3g}")
  ax.set(xscale="log", yscale="log", xlabel="batch B", ylabel="lambda_max(H_B)",
         title="batch Hessian top eigenvalue")
  ax.legend(fontsize=8)
  ax = axes[1]
  for opt, color in (("sgd", "C1"), ("adam", "C2")):
    per_seed = scans[opt]["lr_max"]
    geo = np.exp(np.log(per_seed).mean(1))
    ax.plot(LR_BATCHES, geo, "o-", color=color,
            label=f"{opt}: slope {fits[opt][0].exponent:.2f} (small B)")
  ax.plot(CURVATURE_BATCHES, [max_learning_rate(np.mean(curv[b])) for b in CURVATURE_BATCHES],
          "--", color="C1", alpha=0.6, label="2 / lambda_max(H_B)")
  ax.set(xscale="log", yscale="log", xlabel="batch B", ylabel="largest stable lr",
         title="lr_max vs B (40 steps from fixed weights)")
  ax.legend(fontsize=8)
  ax = axes[2]
  reached = [(s["batch"], s["steps_to_target"][0]) for s in sweep_summary if s["steps_to_target"]]
  if reached:
    ax.plot(*zip(*reached), "o", label="measured")
  if fit_knee is not None:
    g = np.geomspace(SWEEP_BATCHES[0], SWEEP_BATCHES[-1], 100)
    ax.plot(g, fit_knee.s_min * (1 + fit_knee.b_crit / g), "--",
            label=f"fit, B_crit = {fit_knee.b_crit:.0f}")
  ax.axvline(b_simple, color="C3", ls=":", label=f"B_simple = {b_simple:.0f}")
  ax.set(xscale="log", yscale="log", xlabel="batch B", ylabel="steps to train loss <= 0.4",
         title="steps to target (AdamW, sqrt rule)")
  ax.legend(fontsize=8)
  ax = axes[3]
  for i, (b, (near, series)) in enumerate(sorted(noise.items())):
    ax.plot(*zip(*series), "-", color=plt.cm.viridis(i / max(len(noise) - 1, 1)), label=f"B={b}")
    if near:
      ax.plot(*near, "k.", ms=8)
  ax.set(xscale="log", yscale="log", xlabel="step", ylabel="B_simple",
         title="noise scale during training (dots: at the target)")
  ax.legend(fontsize=7, ncol=2)
  for a in axes:
    a.grid(True, which="both", alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(results, "plot.png"), dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="/tmp/lr_vs_batch")
  parser.add_argument("--results", default=RESULTS)
  parser.add_argument("--weights_steps", type=int, default=2000)
  parser.add_argument("--lr_seeds", type=int, default=2)
  parser.add_argument("--sweep_steps", type=int, default=2500)
  parser.add_argument("--fit_upto", type=int, default=256,
                      help="largest B in the 'before saturation' exponent fit")
  args = parser.parse_args()
  os.makedirs(args.results, exist_ok=True)

  config = weights_config(args.weights_steps)
  weights_dir = os.path.join(args.workdir, "weights")
  weights_summary = train.run(config, weights_dir)
  data, mesh, task, state = trained(config, weights_dir)
  rows = data.train.num_examples

  _say("part 1: curvature")
  curv = curvature(task, mesh, state, rows, args.workdir, draws=lambda b: 6 if b <= 256 else 3)
  curv = {int(k): v for k, v in curv.items()}

  _say("part 2: largest stable learning rates")
  scans, eta = {"sgd": {}, "adam": {}}, Eta(2 * len(LR_BATCHES) * args.lr_seeds)
  for opt in scans:
    for b in LR_BATCHES:
      scans[opt][b] = []
      for seed in range(args.lr_seeds):
        path = os.path.join(args.workdir, "lr_max", f"{opt}_{b}_{seed}.json")
        scan, _ = _cached(path, lambda: lr_scan(config, data, state, opt, b, seed))
        scans[opt][b].append(scan)
        eta.step(1, f"{opt} B={b} seed {seed}: lr_max {lr_max(scan):.3g}")

  _say("part 3: critical batch (big_batch.sweep)")
  base = sweep_config(args.sweep_steps)
  rows_sweep = sweep.run(base, SWEEP_BATCHES, "sqrt", 1, os.path.join(args.workdir, "sweep"),
                         target=TARGET)
  sweep.write_results(rows_sweep, os.path.join(args.results, "sweep"), base,
                      f"MNIST-1D CNN, AdamW sqrt rule, {args.sweep_steps} steps", TARGET)
  sweep_summary = sweep.summarize(rows_sweep, sweep.held_out_eval(base))
  noise = {r["batch"]: noise_at_target(r["workdir"]) for r in rows_sweep}
  print(write(args.results, curv, scans, sweep_summary, noise, weights_summary, rows, args))


if __name__ == "__main__":
  main()
