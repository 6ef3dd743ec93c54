"""Batch active learning for regression: the bmdal benchmark (a) and EV-GP's batch-size claim (b).

    nice -n 10 python experiments/active_learning.py [--part a b c] [--seeds 0 1] [--workdir DIR]

Training routes. (a) and (b): a direct jitted MSE loop (`selection/regression_fit.py`) on the
package's MLP (10 → 128 → 128 → 1, ReLU, Adam 3e-3 decayed linearly to 0, minibatch 64 drawn
with replacement, 500 steps per round), vmapped over initialisations: (b) trains 10 networks
per set and up to 200 rounds, which one trainer run per network would make hours. (c): every
round is one trainer run, `big_batch.train.run` of configs/active_learning.py (the
`regression` task and builder) with `config.data.train_subset` = the labelled rows, and the
selection uses the network that run checkpointed.
(a) Holzmüller et al. (JMLR 2023) protocol at small scale: diabetes (442), Friedman-1 and
    Friedman-3 (1,500 rows each, noise 0.1 / σ_y-scaled), 20% test, x and y standardised by
    train+pool statistics, 32 initial labels, 6 rounds of 32; metric: the mean over the 6 AL
    rounds (initial model excluded) of log RMSE and log MAE, averaged over seeds then data sets.
    Methods (bmdal names): random, maxdiag_ll_train, maxdet-p_ll_train, bait-f-p_grad_rp-512
    _train, kmeanspp-p_ll_train (BADGE), lcmd-tp_grad_rp-512, ev_gp (infinite-width ReLU NTK,
    σ_w=1, σ_b=0, σ_n=1e-3, reference set = pool).
(b) Hemachandra et al. (ICML 2023) batch-size claim on Friedman-1: 20 initial labels + 200
    selected, batch b ∈ {1, 10, 50, 200}; random and EV-GP are training-free (no training
    between rounds: their choice does not depend on a network); k-means++ (ll_train, BADGE)
    and LCMD (grad_rp-512) use the network trained on the current labels every round (300
    steps per round). The final set trains 10 networks from different inits (1,000 steps):
    test RMSE (mean over inits) and the variance of their predictions (mean over test rows).

(c) Through the trainer: the `regression` builder's fixed split (80/20, seed 0) of diabetes,
    Friedman-1 and Friedman-3; 32 initial labels, 6 rounds of 32, batch 32 for 500 steps a
    round; random, LCMD (lcmd-tp_grad_rp-512) and EV-GP; test RMSE after each round.

Writes results/active_learning/{table_a.md, table_b.md, table_c.md, runs.json, plot_*.png};
finished runs are read back from runs.json, not rerun.
"""
import argparse
import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from big_batch import configs  # noqa: E402
from big_batch import train as trainer  # noqa: E402
from big_batch.data import datasets  # noqa: E402
from big_batch.selection import regression_data as rd  # noqa: E402
from big_batch.selection import regression_task  # noqa: E402
from big_batch.selection import regression_fit as rf  # noqa: E402
from big_batch.selection.bmdal import select_batch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "active_learning")
HIDDEN = (128, 128)
METHODS_A = {
    "random": dict(kernel="linear", transforms=(), method="random"),
    "maxdiag_ll_train": dict(kernel="ll", transforms=("posterior",), method="maxdiag"),
    "maxdet-p_ll_train": dict(kernel="ll", transforms=("posterior",), method="maxdet"),
    "bait-f-p_grad_rp-512_train": dict(kernel="grad", transforms=(("sketch", 512), "posterior"),
                                       method="bait"),
    "kmeanspp-p_ll_train": dict(kernel="ll", transforms=("posterior",), method="kmeanspp"),
    "lcmd-tp_grad_rp-512": dict(kernel="grad", transforms=(("sketch", 512),), method="lcmd"),
    "ev_gp_ntk": dict(kernel="ntk", transforms=(), method="ev_gp"),
}
TRAINING_FREE = ("random", "ev_gp_ntk")
METHODS_B = ("random", "ev_gp_ntk", "kmeanspp-p_ll_train", "lcmd-tp_grad_rp-512")
BATCHES_B = (1, 10, 50, 200)


def dataset(name, seed):
  """(x, y, train+pool rows, test rows), standardised by train+pool statistics."""
  if name == "diabetes":
    x, y = rd.diabetes()
  elif name == "friedman1":
    x, y = rd.friedman(1500, 1, noise=0.1, seed=100)
  else:
    x, y = rd.friedman(1500, 3, noise=0.1, seed=100)
  perm = np.random.default_rng(seed).permutation(len(x))
  n_test = len(x) // 5
  test, rest = perm[:n_test], perm[n_test:]
  x, y = rd.standardize(x, y, rest)
  return x, y, rest, test


def train(x, y, labelled, keys, steps):
  padded = np.zeros(len(x), np.int32)
  padded[:len(labelled)] = labelled
  return rf.fit(keys, x, y, padded, len(labelled), input_dim=x.shape[1], output_dim=1,
                hidden=HIDDEN, steps=steps)


def errors(states, x, y, test):
  pred = np.asarray(rf.predict(states, x[test], input_dim=x.shape[1], output_dim=1,
                               hidden=HIDDEN))
  res = pred - y[test][None]
  rmse = np.sqrt(np.mean(res ** 2, axis=(1, 2)))
  mae = np.mean(np.abs(res), axis=(1, 2))
  return rmse, mae, float(np.mean(np.var(pred, axis=0)))


def al_run(x, y, rest, test, method, n_init, batch, rounds, seed, steps, train_each_round):
  """Alternate selection and training; returns per-round (rmse, mae) and the labelled rows."""
  rng = np.random.default_rng(seed)
  labelled = list(rng.choice(rest, n_init, replace=False))
  key = jax.random.key(seed)
  history = []
  for r in range(rounds + 1):
    key, k_fit, k_sel = jax.random.split(key, 3)
    states = None
    if train_each_round or r == rounds:
      states = train(x, y, np.array(labelled), k_fit[None], steps)
      if r == 0 or train_each_round:
        rmse, mae, _ = errors(states, x, y, test)
        history.append((float(rmse[0]), float(mae[0])))
    if r == rounds:
      break
    pool = np.setdiff1d(rest, labelled)
    model = rf.model_from_states(states, 0, x.shape[1], 1, HIDDEN) if states is not None else None
    if model is None and method not in TRAINING_FREE:
      raise ValueError(f"{method} needs a trained network")
    spec = METHODS_A[method]
    picked = select_batch([model] if model is not None else [], x[np.array(labelled)], x[pool],
                          batch, key=k_sel, kernel=spec["kernel"], transforms=spec["transforms"],
                          method=spec["method"],
                          kernel_args={"depth": len(HIDDEN) + 1} if spec["kernel"] == "ntk"
                          else None)
    assert len(set(picked)) == batch
    labelled += list(pool[picked])
  return history, labelled


def load_runs():
  path = os.path.join(RESULTS, "runs.json")
  return json.load(open(path)) if os.path.exists(path) else {}


def save_runs(runs):
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, "runs.json"), "w") as f:
    json.dump(runs, f, indent=1, sort_keys=True)


def progress(done, total, start, name):
  elapsed = time.time() - start
  eta = elapsed / max(done, 1) * (total - done)
  print(f"[{done}/{total}] {name}  elapsed {elapsed / 60:.1f} min  ETA {eta / 60:.1f} min",
        flush=True)


def part_a(runs, seeds):
  names = [(d, m, s) for d in ("diabetes", "friedman1", "friedman3") for s in seeds
           for m in METHODS_A]
  start, done = time.time(), 0
  for d, m, s in names:
    rid = f"a/{d}/{m}/{s}"
    if rid not in runs:
      x, y, rest, test = dataset(d, s)
      t = time.time()
      history, _ = al_run(x, y, rest, test, m, 32, 32, 6, s, 500, True)
      runs[rid] = {"history": history, "seconds": time.time() - t}
      save_runs(runs)
    done += 1
    progress(done, len(names), start, rid)
  table, curves, per_seed = [], {}, {}
  for m in METHODS_A:
    per_d = []
    for d in ("diabetes", "friedman1", "friedman3"):
      h = np.array([runs[f"a/{d}/{m}/{s}"]["history"] for s in seeds])  # (seeds, rounds+1, 2)
      per_d.append(np.log(h[:, 1:]).mean(1))  # (seeds, 2)
      curves.setdefault(d, {})[m] = h[:, :, 0].mean(0)
    per_d = np.array(per_d)  # (data sets, seeds, 2)
    per_seed[m] = per_d[:, :, 0].mean(0)
    table.append((m, *per_d[:, :, 0].mean(1), per_d[:, :, 0].mean(), per_d[:, :, 1].mean()))
  table.sort(key=lambda r: r[4])

  def delta(m):  # Paired over seeds: mean log RMSE minus random's, ± standard error.
    diff = per_seed[m] - per_seed["random"]
    return f"{diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f}"
  lines = ["| method | diabetes log RMSE | friedman1 log RMSE | friedman3 log RMSE |"
           " mean log RMSE | mean log MAE | Δ mean log RMSE vs random |",
           "|---|---|---|---|---|---|---|"]
  lines += [f"| {r[0]} | " + " | ".join(f"{v:.3f}" for v in r[1:]) + f" | {delta(r[0])} |"
            for r in table]
  with open(os.path.join(RESULTS, "table_a.md"), "w") as f:
    f.write(f"Part (a): mean over 6 AL rounds of log RMSE / log MAE (lower is better), "
            f"{len(seeds)} seeds, 32 initial + 6 x 32.\n\n" + "\n".join(lines) + "\n")
  fig, axes = plt.subplots(1, 3, figsize=(13, 4))
  for ax, (d, c) in zip(axes, curves.items()):
    for m, v in c.items():
      ax.plot(32 + 32 * np.arange(len(v)), v, label=m, marker=".")
    ax.set(title=d, xlabel="labels", ylabel="test RMSE (standardised y)", yscale="log")
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(RESULTS, "plot_a.png"), dpi=110)
  print("\n".join(lines))


def part_b(runs, seeds):
  names = [(m, b, s) for s in seeds for b in BATCHES_B[::-1] for m in METHODS_B]
  start, done = time.time(), 0
  for m, b, s in names:
    rid = f"b/friedman1/{m}/{b}/{s}"
    if rid not in runs:
      x, y, rest, test = dataset("friedman1", s)
      t = time.time()
      _, labelled = al_run(x, y, rest, test, m, 20, b, 200 // b, s, 300, m not in TRAINING_FREE)
      states = train(x, y, np.array(labelled), jax.random.split(jax.random.key(1000 + s), 10),
                     1000)
      rmse, mae, var = errors(states, x, y, test)
      runs[rid] = {"rmse": float(rmse.mean()), "mae": float(mae.mean()), "init_variance": var,
                   "seconds": time.time() - t}
      save_runs(runs)
    done += 1
    progress(done, len(names), start, rid)
  lines = ["| method | " + " | ".join(f"b={b} RMSE / var" for b in BATCHES_B) + " |",
           "|---|" + "---|" * len(BATCHES_B)]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for m in METHODS_B:
    cells, rm, va = [], [], []
    for b in BATCHES_B:
      r = [runs[f"b/friedman1/{m}/{b}/{s}"] for s in seeds]
      rm.append(np.mean([v["rmse"] for v in r]))
      va.append(np.mean([v["init_variance"] for v in r]))
      cells.append(f"{rm[-1]:.3f} / {va[-1]:.4f}")
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
    axes[0].plot(BATCHES_B, rm, marker="o", label=m)
    axes[1].plot(BATCHES_B, va, marker="o", label=m)
  axes[0].set(xscale="log", xlabel="AL batch size b", ylabel="test RMSE (10 inits)")
  axes[1].set(xscale="log", xlabel="AL batch size b", ylabel="variance over 10 inits")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(RESULTS, "plot_b.png"), dpi=110)
  with open(os.path.join(RESULTS, "table_b.md"), "w") as f:
    f.write(f"Part (b): Friedman-1, 20 initial + 200 selected labels, {len(seeds)} seeds; test "
            "RMSE (mean over 10 inits) / variance of predictions over 10 inits.\n\n"
            + "\n".join(lines) + "\n")
  print("\n".join(lines))


METHODS_C = ("random", "lcmd-tp_grad_rp-512", "ev_gp_ntk")


def trainer_al_run(variant, method, seed, workdir, data_dir, n_init=32, batch=32, rounds=6):
  """(c): each round one `train.run` on the labelled rows; returns per-round test (rmse, mae)."""
  config = configs.get("active_learning")
  config.seed, config.data.variant, config.data.data_dir = seed, variant, data_dir
  pool_split = datasets.load(config.data).train
  x = pool_split.read(np.arange(pool_split.num_examples))["input"]
  rng = np.random.default_rng(seed)
  labelled = list(rng.choice(len(x), n_init, replace=False))
  key = jax.random.key(seed)
  history = []
  for r in range(rounds + 1):
    round_dir = os.path.join(workdir, f"round{r}")
    os.makedirs(round_dir, exist_ok=True)
    subset = os.path.join(workdir, f"labelled{r}.npy")
    np.save(subset, np.array(labelled, np.int64))
    config.data.train_subset = subset
    summary = trainer.run(config, round_dir)
    history.append((summary["evals"]["test"]["rmse"], summary["evals"]["test"]["mae"]))
    if r == rounds:
      break
    key, k_sel = jax.random.split(key)
    model = regression_task.trained_model(round_dir, config, x.shape[1])
    pool = np.setdiff1d(np.arange(len(x)), labelled)
    spec = METHODS_A[method]
    picked = select_batch([model], x[np.array(labelled)], x[pool], batch, key=k_sel,
                          kernel=spec["kernel"], transforms=spec["transforms"],
                          method=spec["method"],
                          kernel_args={"depth": len(HIDDEN) + 1} if spec["kernel"] == "ntk"
                          else None)
    assert len(set(picked)) == batch
    labelled += list(pool[picked])
  return history


def part_c(runs, seeds, workdir):
  names = [(d, m, s) for d in ("diabetes", "friedman1", "friedman3") for m in METHODS_C
           for s in seeds]
  start, todo = time.time(), [n for n in names if f"c/{n[0]}/{n[1]}/{n[2]}" not in runs]
  for i, (d, m, s) in enumerate(todo):
    history = trainer_al_run(d, m, s, os.path.join(workdir, f"c_{d}_{m}_{s}"),
                             os.path.join(workdir, "data"))
    runs[f"c/{d}/{m}/{s}"] = {"rmse": [h[0] for h in history], "mae": [h[1] for h in history]}
    save_runs(runs)
    progress(i + 1, len(todo), start, f"c/{d}/{m}/{s}")
  lines = ["Part (c), every round through the trainer (configs/active_learning.py): mean over "
           f"the 6 rounds after the initial one of log test RMSE, seeds {list(seeds)}; "
           "32 initial + 6 x 32 labels, 500 steps of batch 32 a round.", "",
           "| method | diabetes | friedman1 | friedman3 | mean | final RMSE (mean over data) |",
           "|---|---|---|---|---|---|"]
  for m in METHODS_C:
    cells, finals = [], []
    for d in ("diabetes", "friedman1", "friedman3"):
      r = [runs[f"c/{d}/{m}/{s}"]["rmse"] for s in seeds]
      cells.append(float(np.mean([np.mean(np.log(h[1:])) for h in r])))
      finals.append(float(np.mean([h[-1] for h in r])))
    lines.append(f"| {m} | " + " | ".join(f"{c:.3f}" for c in cells)
                 + f" | {np.mean(cells):.3f} | {np.mean(finals):.3f} |")
  with open(os.path.join(RESULTS, "table_c.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
  for ax, d in zip(axes, ("diabetes", "friedman1", "friedman3")):
    for m in METHODS_C:
      curves = np.array([runs[f"c/{d}/{m}/{s}"]["rmse"] for s in seeds])
      labels = 32 + 32 * np.arange(curves.shape[1])
      ax.plot(labels, np.log(curves).mean(0), marker="o", label=m)
    ax.set(title=f"{d} (through the trainer)", xlabel="labelled rows", ylabel="log test RMSE")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(RESULTS, "plot_c.png"), dpi=120)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--part", nargs="+", default=["a", "b"])
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
  parser.add_argument("--workdir", default="/tmp/big_batch/active_learning",
                      help="(c): the trainer runs' workdirs and generated data")
  args = parser.parse_args()
  runs = load_runs()
  if "a" in args.part:
    part_a(runs, args.seeds)
  if "b" in args.part:
    part_b(runs, args.seeds)
  if "c" in args.part:
    part_c(runs, args.seeds, args.workdir)


if __name__ == "__main__":
  main()
