"""MCLRec (Qin et al., SIGIR 2023) against SASRec and CL4SRec, and MCLRec-J, over the batch size.

    python experiments/mclrec.py [--seeds 0 1 2] [--batches 16 32 64 128 256] \
        [--epochs 2] [--workdir /tmp/mclrec_experiment]

configs/recsys_mclrec.py on the `sweep` variant of the synthetic seqrec data (500 users, 241
items after 5-core filtering, 5,072 training prefixes, histories of the last 20 items), with
a tiny SASRec (1 block, 2 heads, d = 32, FFN 64, dropout 0.2) so that 60 runs fit on 2 shared
CPU cores; Adam lr 1e-3 (not scaled with the batch, as in the paper), lambda = beta = 0.1,
tau = 1. Every run trains the same number of epochs (equal examples) at every batch size;
the validation and test splits are ranked in full after every epoch, and each run reports
the test metrics of its best validation MRR@10 epoch (the code's early stopping, patience 10,
applied to the logged metrics: recsys.metrics.early_stopping). The claims under test:
MCLRec > CL4SRec > SASRec, and MCLRec's gap widens at small batch (paper Fig. 4).

Writes results/mclrec/{table.md, plot.png, runs.json}. Each run has its own workdir under
--workdir; a finished run is read back, not rerun (resumable), and a progress line with an
ETA follows each run. XLA compilations are cached on disk, so seeds after the first reuse them.
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

from big_batch import train  # noqa: E402
from big_batch.configs import recsys_mclrec as recipe  # noqa: E402
from big_batch.recsys import metrics as rec_metrics  # noqa: E402
from big_batch.train.metrics import read_jsonl  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "mclrec")
METHODS = ("sasrec", "cl4srec", "mclrec", "mclrec_j")
TRAIN_EXAMPLES = 5072  # The sweep variant's training prefixes.
KEYS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr@10")
PATIENCE = 10


def config_for(method, batch, seed, epochs, data_dir):
  config = recipe.get_config()
  config.seed = seed
  config.data.variant = "sweep"
  config.data.data_dir = data_dir
  config.model.update(hidden=32, blocks=1, heads=2, inner=64, dropout=0.2, attn_dropout=0.2)
  config.mclrec.method = method
  config.batch.size = batch
  config.num_epochs = float(epochs)
  every = -(-TRAIN_EXAMPLES // batch)  # One epoch.
  config.evals = dict(validation=dict(every=every, split="validation", batch_size=100),
                      test=dict(every=every, split="test", batch_size=100))
  config.log_every = every
  config.checkpoint_every = every
  config.keep_checkpoints = 1
  return config


def run_one(method, batch, seed, args):
  workdir = os.path.join(args.workdir, f"{method}_b{batch}_seed{seed}")
  record = os.path.join(workdir, "record.json")
  if os.path.exists(record):
    return json.load(open(record))
  summary = train.run(config_for(method, batch, seed, args.epochs, args.data_dir), workdir)
  rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  by_step = {}
  for row in rows:
    by_step.setdefault(row["step"], {}).update(row)
  evals = [by_step[s] for s in sorted(by_step) if "validation/mrr@10" in by_step[s]]
  best = rec_metrics.early_stopping(evals, "validation/mrr@10", PATIENCE)
  out = {"method": method, "batch": batch, "seed": seed, "best_step": best["step"],
         "test": {k: best[f"test/{k}"] for k in KEYS},
         "validation": {k: best[f"validation/{k}"] for k in KEYS},
         "final_test": {k: summary["evals"]["test"][k] for k in KEYS},
         "curve": [{"step": e["step"], "validation/ndcg@10": e["validation/ndcg@10"],
                    "test/ndcg@10": e["test/ndcg@10"]} for e in evals],
         "wall_seconds": summary["wall_time_seconds"]}
  json.dump(out, open(record, "w"))
  return out


def mean_sd(values):
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def write_table(runs, args):
  lines = ["# MCLRec vs CL4SRec vs SASRec on synthetic sequences: batch-size sweep", "",
           f"Setup: experiments/mclrec.py; seqrec `sweep` (500 users, 241 items, 5,072 "
           f"training prefixes, leave-one-out, full ranking over all items); SASRec 1 block, "
           f"d = 32, dropout 0.2; Adam lr 1e-3 at every batch; lambda = beta = 0.1, tau = 1; "
           f"{args.epochs} epochs at every batch size (equal examples); test metrics at the "
           f"best validation MRR@10 epoch; seeds {args.seeds}; mean ± sd over seeds. Beauty "
           f"(the paper's reference numbers) is not available on this machine.", ""]
  lines += ["| method | batch | " + " | ".join(f"{k.upper()}" for k in KEYS[:6]) +
            " | s / run |", "|---|---|" + "---|" * 7]
  table = {}
  for method in METHODS:
    for batch in args.batches:
      chosen = [r for r in runs if r["method"] == method and r["batch"] == batch]
      if not chosen:
        continue
      stats = {k: mean_sd([r["test"][k] for r in chosen]) for k in KEYS}
      table[method, batch] = stats
      cells = " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in (stats[k] for k in KEYS[:6]))
      wall = np.mean([r["wall_seconds"] for r in chosen])
      lines.append(f"| {method} | {batch} | {cells} | {wall:.0f} |")
  lines += ["", "Reading (computed from the runs above, NDCG@10 means):", ""]
  for batch in args.batches:
    got = {m: table[m, batch]["ndcg@10"][0] for m in METHODS if (m, batch) in table}
    if len(got) == len(METHODS):
      order = " > ".join(sorted(got, key=got.get, reverse=True))
      lines.append(f"- batch {batch}: {order}; "
                   f"MCLRec - CL4SRec {got['mclrec'] - got['cl4srec']:+.4f}, "
                   f"CL4SRec - SASRec {got['cl4srec'] - got['sasrec']:+.4f}, "
                   f"MCLRec-J - MCLRec {got['mclrec_j'] - got['mclrec']:+.4f}")
  lines += ["", "Notes: MCLRec (the code's 3-step alternation) makes two encoder updates per "
            "batch, the other methods one. With equal epochs a batch of 16 gets 16x the "
            "updates of a batch of 256, so the batch-size trend here mixes in the number of "
            "updates; the paper trains to convergence (100 epochs, early stopping)."]
  open(os.path.join(RESULTS, "table.md"), "w").write("\n".join(lines) + "\n")
  return table


def plot(table, args):
  fig, ax = plt.subplots(figsize=(6, 4))
  for method in METHODS:
    points = [(b, *table[method, b]["ndcg@10"]) for b in args.batches if (method, b) in table]
    if points:
      b, m, s = map(np.array, zip(*points))
      ax.errorbar(b, m, yerr=s, marker="o", capsize=3, label=method)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("batch size")
  ax.set_ylabel("test NDCG@10 (best validation epoch)")
  ax.set_title(f"synthetic seqrec, {args.epochs} epochs, {len(args.seeds)} seeds")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(RESULTS, "plot.png"), dpi=120)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128, 256])
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--workdir", default="/tmp/mclrec_experiment")
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  args.data_dir = args.data_dir or os.path.join(args.workdir, "tensorflow_datasets")
  jax.config.update("jax_compilation_cache_dir", os.path.join(args.workdir, "xla_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  os.makedirs(RESULTS, exist_ok=True)
  jobs = [(m, b, s) for s in args.seeds for b in args.batches for m in METHODS]
  runs, start, fresh = [], time.time(), 0
  for i, (method, batch, seed) in enumerate(jobs):
    before = time.time()
    cached = os.path.exists(os.path.join(args.workdir, f"{method}_b{batch}_seed{seed}",
                                         "record.json"))
    runs.append(run_one(method, batch, seed, args))
    fresh += not cached
    elapsed = time.time() - start
    eta = elapsed / max(fresh, 1) * (len(jobs) - i - 1)
    print(f"[{i + 1}/{len(jobs)}] {method} batch {batch} seed {seed}: test NDCG@10 "
          f"{runs[-1]['test']['ndcg@10']:.4f} ({time.time() - before:.0f} s); elapsed "
          f"{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min", flush=True)
    json.dump(runs, open(os.path.join(RESULTS, "runs.json"), "w"), indent=1)
    plot(write_table(runs, args), args)


if __name__ == "__main__":
  main()
