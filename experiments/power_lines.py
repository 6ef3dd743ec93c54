"""Power Lines (Bergsma et al. 2025) at toy scale: AdamW weight decay vs batch size and tokens
per parameter, on the byte-level LM.

    python experiments/power_lines.py [--workdir /tmp/power_lines]

configs/lm_lasp.py shrunk to one layer of width 32 (2 heads; N = 25,712 parameters), on one
device with single-device attention, AdamW (peak learning rate 1e-2, cosine decay, 5 warmup
steps; weight decay on every matrix and embedding, not on norm scales), a budget of D tokens
(`num_examples` sequences of 256 bytes, so every batch size sees the same data), validation
loss at the end. Two sweeps of the weight decay lambda over 2^-4 .. 2^4, each cell a
`big_batch.sweep` run:

1. lambda_opt vs batch: B = 8 and 16 sequences at D = 16 tokens per parameter (one epoch):
   Power Lines' fixed-(N, D) claim is lambda_opt proportional to B (the timescale
   tau = B / (eta lambda D) stays put), so lambda_opt should double.
2. tau_opt vs tokens per parameter: B = 8 at TPP = 8, 16, 32 (half, one and two epochs):
   tau_opt = B / (eta lambda_opt D) should fall as a power law TPP^m (m ~ -0.5 in the paper).

lambda_opt is the vertex of a parabola in log lambda through the 5 points around the best
(`scaling.power_lines.fit_log_optimum`, with a 95% interval); exponents come with t-intervals.
Writes results/power_lines/table.md and plot.png; each cell's run lives under --workdir and is
reused when rerun.
"""
import argparse
import math
import os
import time

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jax  # noqa: E402
from flax import nnx  # noqa: E402

from big_batch import configs, models, sweep  # noqa: E402
from big_batch.scaling import power_lines  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "power_lines")
SEQ_LEN = 256
LEARNING_RATE = 1e-2
WEIGHT_DECAYS = 2.0 ** np.arange(-4, 5)
BATCH_SWEEP = dict(batches=(8, 16), tokens_per_param=16)
TPP_SWEEP = dict(batch=8, tokens_per_param=(8, 16, 32))


def _say(message):
  print(f"power_lines: {message}", flush=True)


def _num_params() -> int:
  config = configs.get("lm_lasp", "quick")
  config.model.update(dim=32, depth=1, heads=2, sequence_parallel="blockwise")
  model = nnx.eval_shape(lambda: models.build_language_model(config.model, nnx.Rngs(0)))
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


PARAMS = _num_params()


def lm_config(weight_decay: float, tokens_per_param: float):
  """The shrunk LM with AdamW at `weight_decay` and a budget of TPP * N tokens."""
  config = configs.get("lm_lasp", "quick")
  config.model.update(dim=32, depth=1, heads=2, sequence_parallel="blockwise")
  config.mesh.update(data=-1, seq=1)
  config.optimizer = dict(name="adamw", learning_rate=LEARNING_RATE, schedule="cosine",
                          warmup_steps=5, end_value=0.0, weight_decay=float(weight_decay),
                          weight_decay_mask="exclude_bias_and_norm")
  config.num_steps = None
  config.num_examples = int(round(tokens_per_param * PARAMS / SEQ_LEN))
  config.log_every = 25
  config.checkpoint_every = 10_000
  config.evals.validation.every = 10_000  # At the end only.
  return config


def tokens(config) -> int:
  return config.num_examples * SEQ_LEN


def sweep_weight_decay(batches, tokens_per_param, workdir, eta):
  """{(batch, lambda): final validation loss} over WEIGHT_DECAYS."""
  out = {}
  for wd in WEIGHT_DECAYS:
    config = lm_config(wd, tokens_per_param)
    rows = sweep.run(config, batches, "none", 1,
                     os.path.join(workdir, f"tpp{tokens_per_param}", f"wd{wd:g}"))
    for row in rows:
      out[(row["batch"], float(wd))] = row["evals"]["validation"]["loss"]
    eta.step(len(batches), f"TPP {tokens_per_param}, lambda {wd:g}: " + ", ".join(
        f"B={r['batch']} {r['evals']['validation']['loss']:.4f}" for r in rows))
  return out


def optimum(losses, batch):
  """lambda_opt at `batch` from the 5 sweep points around the best one."""
  wds = np.array(WEIGHT_DECAYS)
  values = np.array([losses[(batch, float(w))] for w in wds])
  start = int(np.clip(np.argmin(values) - 2, 0, len(wds) - 5))
  return power_lines.fit_log_optimum(wds[start:start + 5], values[start:start + 5])


class Eta:
  def __init__(self, total):
    self.total, self.done, self.start = total, 0, time.perf_counter()

  def step(self, units, what):
    self.done += units
    elapsed = time.perf_counter() - self.start
    _say(f"{what} ({self.done}/{self.total} runs); elapsed {elapsed:.0f} s, ETA "
         f"{elapsed / self.done * (self.total - self.done):.0f} s")


def _interval(opt):
  flag = "" if opt.resolved else " (not bracketed)"
  return f"{opt.value:.3g} [{opt.lower:.3g}, {opt.upper:.3g}]{flag}"


def write(results, batch_losses, tpp_losses):
  b_small, b_big = BATCH_SWEEP["batches"]
  tpp0 = BATCH_SWEEP["tokens_per_param"]
  opts = {b: optimum(batch_losses, b) for b in (b_small, b_big)}
  d0 = tokens(lm_config(1.0, tpp0))
  lines = [
      "# Power Lines at toy scale: AdamW weight decay vs batch size and tokens per parameter",
      "",
      f"Byte-level linear-attention LM (configs/lm_lasp.py shrunk: dim 32, 1 layer, 2 heads, "
      f"N = {PARAMS:,} parameters), pydoc_text (1702 training sequences of {SEQ_LEN} bytes), "
      f"AdamW peak lr {LEARNING_RATE:g} with cosine decay, one seed (0), 1 CPU device. Loss: "
      "validation nats per byte at the end of the run. lambda is optax.adamw's weight_decay "
      "(decay per step eta*lambda); tau = B / (eta lambda D) with B and D in tokens.",
      "",
      f"## 1. lambda_opt vs batch size (D = {d0:,} tokens, TPP {tpp0})",
      "",
      "| lambda | " + " | ".join(f"B={b} loss | B={b} tau" for b in (b_small, b_big)) + " |",
      "|---|---|---|---|---|",
  ]
  for wd in WEIGHT_DECAYS:
    cols = []
    for b in (b_small, b_big):
      cols += [f"{batch_losses[(b, float(wd))]:.4f}",
               f"{power_lines.timescale(b * SEQ_LEN, LEARNING_RATE, wd, d0):.3g}"]
    lines.append(f"| {wd:g} | " + " | ".join(cols) + " |")
  ratio = opts[b_big].value / opts[b_small].value
  low = opts[b_big].lower / opts[b_small].upper
  high = opts[b_big].upper / opts[b_small].lower
  slope = math.log(ratio) / math.log(b_big / b_small)
  lines += ["", "| B | lambda_opt [95%] | tau_opt |", "|---|---|---|"]
  for b in (b_small, b_big):
    tau = power_lines.timescale(b * SEQ_LEN, LEARNING_RATE, opts[b].value, d0)
    lines.append(f"| {b} | {_interval(opts[b])} | {tau:.3g} |")
  lines += ["", f"lambda_opt(B={b_big}) / lambda_opt(B={b_small}) = {ratio:.2f} (interval "
                f"{low:.2f} .. {high:.2f} from the two intervals); Power Lines predicts "
                f"{b_big / b_small:g}. Exponent d log lambda_opt / d log B = {slope:.2f} "
                "(predicted 1).", ""]

  b = TPP_SWEEP["batch"]
  tpps = TPP_SWEEP["tokens_per_param"]
  tpp_opts = {t: optimum(tpp_losses[t], b) for t in tpps}
  taus = {t: power_lines.timescale(b * SEQ_LEN, LEARNING_RATE, tpp_opts[t].value,
                                   tokens(lm_config(1.0, t))) for t in tpps}
  lines += [f"## 2. tau_opt vs tokens per parameter (B = {b})", "",
            "| TPP | D (tokens) | steps | lambda_opt [95%] | tau_opt [95%] |",
            "|---|---|---|---|---|"]
  for t in tpps:
    d = tokens(lm_config(1.0, t))
    tau_lo = power_lines.timescale(b * SEQ_LEN, LEARNING_RATE, tpp_opts[t].upper, d)
    tau_hi = power_lines.timescale(b * SEQ_LEN, LEARNING_RATE, tpp_opts[t].lower, d)
    lines.append(f"| {t} | {d:,} | {d // (b * SEQ_LEN)} | {_interval(tpp_opts[t])} | "
                 f"{taus[t]:.3g} [{tau_lo:.3g}, {tau_hi:.3g}] |")
  fit = power_lines.fit_power_law(list(taus), list(taus.values()))
  lo, hi = fit.interval()
  lines += ["", f"Fit tau_opt = c TPP^m: m = {fit.exponent:.2f}, 95% interval [{lo:.2f}, "
                f"{hi:.2f}] ({fit.dof} residual degree(s) of freedom); Power Lines: m = "
                f"{power_lines.TAU_EXPONENT} (as quoted).", ""]
  text = "\n".join(lines)
  with open(os.path.join(results, "table.md"), "w") as f:
    f.write(text)
  _plot(results, batch_losses, tpp_losses, opts, tpp_opts, taus, fit, d0)
  return text


def _plot(results, batch_losses, tpp_losses, opts, tpp_opts, taus, fit, d0):
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for b, color in zip(BATCH_SWEEP["batches"], ("C0", "C1")):
    axes[0].plot(WEIGHT_DECAYS, [batch_losses[(b, float(w))] for w in WEIGHT_DECAYS], "o-",
                 color=color, label=f"B={b}: lambda_opt {opts[b].value:.3g}")
    axes[0].axvline(opts[b].value, color=color, ls=":")
  axes[0].set(xscale="log", xlabel="weight decay lambda", ylabel="validation loss (nats/byte)",
              title=f"lambda sweep at two batch sizes (TPP {BATCH_SWEEP['tokens_per_param']})")
  b = TPP_SWEEP["batch"]
  for t, color in zip(TPP_SWEEP["tokens_per_param"], ("C2", "C3", "C4")):
    d = tokens(lm_config(1.0, t))
    tau = [power_lines.timescale(b * SEQ_LEN, LEARNING_RATE, w, d) for w in WEIGHT_DECAYS]
    axes[1].plot(tau, [tpp_losses[t][(b, float(w))] for w in WEIGHT_DECAYS], "o-", color=color,
                 label=f"TPP {t}: tau_opt {taus[t]:.3g}")
  axes[1].set(xscale="log", xlabel="timescale tau = B / (eta lambda D)",
              ylabel="validation loss (nats/byte)", title=f"loss vs tau (B = {b})")
  tpps = np.array(list(taus))
  axes[2].plot(tpps, list(taus.values()), "o", label="measured")
  grid = np.geomspace(tpps.min(), tpps.max(), 50)
  axes[2].plot(grid, fit(grid), "--", label=f"fit m = {fit.exponent:.2f}")
  axes[2].plot(grid, taus[tpps[0]] * (grid / tpps[0]) ** power_lines.TAU_EXPONENT, ":",
               label=f"paper m = {power_lines.TAU_EXPONENT}")
  axes[2].set(xscale="log", yscale="log", xlabel="tokens per parameter", ylabel="tau_opt",
              title="tau_opt vs TPP")
  for ax in axes:
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(results, "plot.png"), dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="/tmp/power_lines")
  parser.add_argument("--results", default=RESULTS)
  args = parser.parse_args()
  os.makedirs(args.results, exist_ok=True)
  other_tpps = [t for t in TPP_SWEEP["tokens_per_param"] if t != BATCH_SWEEP["tokens_per_param"]]
  eta = Eta(len(WEIGHT_DECAYS) * (len(BATCH_SWEEP["batches"]) + len(other_tpps)))
  batch_losses = sweep_weight_decay(BATCH_SWEEP["batches"], BATCH_SWEEP["tokens_per_param"],
                                    args.workdir, eta)
  tpp_losses = {BATCH_SWEEP["tokens_per_param"]: batch_losses}
  for t in other_tpps:
    tpp_losses[t] = sweep_weight_decay((TPP_SWEEP["batch"],), t, args.workdir, eta)
  print(write(args.results, batch_losses, tpp_losses))


if __name__ == "__main__":
  main()
