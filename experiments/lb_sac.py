"""LB-SAC vs SAC-N (Nikulin et al. 2022): does a large batch with a sqrt-scaled learning rate
reach a return threshold >= 3x faster in wall-clock time, with fewer critics?

    python experiments/lb_sac.py [--envs pendulum halfcheetah] [--seeds 0 1]
                                 [--data-dir /tmp/lb_sac/tfds] [--workdir /tmp/lb_sac]
                                 [--summarize]

Data: generated `offline_rl` medium data sets (src/big_batch/rl/behaviour.py: online SAC at
this machine's budget; pendulum-medium 20,000 transitions, halfcheetah-medium 100,000), made
on first use. Every run is configs/offline_rl/sac_n.py through the trainer, with 3 x 64 ReLU
layers (the paper's are 3 x 256; 64 keeps batch 10,000 affordable on 2 CPU cores), Adam
3e-4 x sqrt(B / 256) for actor, critics and temperature, and a fixed number of updates per
setting (fewer at larger batches, as LB-SAC trains fewer epochs):

  sac_n       N = 10, B = 256,    lr 3e-4                 (SAC-N)
  lb_n10      N = 10, B = 2048,   lr 8.5e-4               (LB-SAC at the same N)
  lb_n4       N = 4,  B = 2048,   lr 8.5e-4               (LB-SAC, reduced N)
  lb_n4_10k   N = 4,  B = 10000,  lr 1.875e-3             (LB-SAC's batch, reduced N)

Each run evaluates the deterministic policy (10 episodes Pendulum, 5 HalfCheetah) about 12
times. Wall time to the threshold is training time only: the steps to the first evaluation at
or above the threshold times the run's median seconds per trainer step (from the trainer's
examples/s over log intervals, so evaluations are excluded). The threshold of an environment
is 80% of the best final normalized score any run reached there. Also reported: the final
normalized score (mean +- sd over seeds) and `q_random_std` (std over the ensemble of Q at
uniformly random actions on 1000 data states: LB-SAC's OOD penalty) against batch size.

Writes results/lb_sac/{table.md, runs_<env>.json, curves.png, q_random_std.png}; finished
runs are read back from runs_<env>.json, not rerun. results/lb_sac was made by
`python experiments/lb_sac.py --envs pendulum` and, at the same time,
`python experiments/lb_sac.py --envs halfcheetah --settings sac_n lb_n4 lb_n4_10k` (the
budget left no room for lb_n10 there), seeds 0 and 1, on 2 CPU cores shared with other jobs.
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

from big_batch import configs, train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "lb_sac")
ENVS = {"pendulum": ("pendulum-medium", "Pendulum-v1", 10),
        "halfcheetah": ("halfcheetah-medium", "HalfCheetah-v5", 5)}
# name -> (N, B, updates, updates per trainer step).
SETTINGS = {"sac_n": (10, 256, 12_000, 50), "lb_n10": (10, 2048, 3_000, 8),
            "lb_n4": (4, 2048, 3_000, 8), "lb_n4_10k": (4, 10_000, 1_200, 2)}
THRESHOLD_FRACTION = 0.8


def run_config(env, setting, seed, data_dir):
  variant, env_id, episodes = ENVS[env]
  n, b, updates, k = SETTINGS[setting]
  config = configs.get("offline_rl.sac_n")
  config.seed = seed
  config.data.variant, config.data.data_dir = variant, data_dir
  config.rl.env, config.rl.num_critics, config.rl.hidden = env_id, n, 64
  config.rl.updates_per_step = k
  config.batch = dict(size=b, lr_scaling="sqrt", base_size=256)
  steps = updates // k
  config.num_steps = steps
  config.log_every = max(1, steps // 40)
  config.evals = dict(env=dict(kind="rollout", every=max(1, steps // 12), episodes=episodes,
                               seed=1000, ood_states=1000))
  config.checkpoint_every = steps
  return config


def read_run(workdir, config):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  evals = [(r["step"], r["env/normalized_score"], r["env/q_random_std"]) for r in records
           if "env/normalized_score" in r]
  seconds = [r["train/batch_size"] / r["train/examples_per_second"] for r in records
             if "train/examples_per_second" in r]
  k = config.rl.updates_per_step
  return {"evals": evals, "seconds_per_step": statistics.median(seconds),
          "seconds_per_update": statistics.median(seconds) / k, "updates_per_step": k}


def read_runs() -> dict:
  """Every finished run, from results/lb_sac/runs_<env>.json (one file an environment, so
  invocations for different environments may run at the same time)."""
  runs = {}
  for env in ENVS:
    path = os.path.join(RESULTS, f"runs_{env}.json")
    if os.path.exists(path):
      with open(path) as f:
        runs.update(json.load(f))
  return runs


def write_runs(runs: dict, env: str) -> None:
  mine = {key: r for key, r in runs.items() if key.startswith(env + "/")}
  path = os.path.join(RESULTS, f"runs_{env}.json")
  with open(path + ".tmp", "w") as f:
    json.dump(mine, f, indent=1)
  os.replace(path + ".tmp", path)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
  parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
  parser.add_argument("--data-dir", default="/tmp/lb_sac/tfds")
  parser.add_argument("--workdir", default="/tmp/lb_sac")
  parser.add_argument("--summarize", action="store_true", help="only rewrite the table")
  args = parser.parse_args()
  os.makedirs(RESULTS, exist_ok=True)
  runs = read_runs()
  todo = [(e, s, seed) for e in args.envs for s in args.settings for seed in args.seeds
          if f"{e}/{s}/{seed}" not in runs]
  start = time.perf_counter()
  for i, (env, setting, seed) in enumerate(todo if not args.summarize else []):
    config = run_config(env, setting, seed, args.data_dir)
    workdir = os.path.join(args.workdir, env, setting, str(seed))
    begun = time.perf_counter()
    summary = train.run(config, workdir)
    record = read_run(workdir, config)
    record.update(wall_seconds=time.perf_counter() - begun, final=summary["evals"]["env"])
    runs[f"{env}/{setting}/{seed}"] = record
    write_runs(runs, env)
    done = time.perf_counter() - start
    print(f"[{i + 1}/{len(todo)}] {env} {setting} seed {seed}: score "
          f"{record['final']['normalized_score']:.1f} in {record['wall_seconds']:.0f} s; "
          f"ETA {done / (i + 1) * (len(todo) - i - 1) / 60:.1f} min", flush=True)
  write_table(read_runs(), args)


def data_line(env: str, data_dir: str) -> str:
  """Which policy made the data set, from its builder's metadata (rl/offline_builder.py)."""
  from big_batch.rl import offline_builder  # noqa: PLC0415
  variant = ENVS[env][0]
  try:
    meta = offline_builder.OfflineRL(config=variant, data_dir=data_dir).info.metadata
  except Exception as e:  # noqa: BLE001 -- the table is still written without it.
    return f"Data {variant}: metadata not readable from {data_dir} ({e})."
  return (f"Data {variant}: {meta['transitions']:,} transitions of the {meta['policy']} "
          f"(normalized score {meta['policy_score']:.1f}; the online run's best "
          f"{meta['best_score']:.1f}), mean episode return {meta['mean_episode_return']:.1f}.")


def _fmt(values, digits=1):
  if not values:
    return "-"
  if len(values) == 1:
    return f"{values[0]:.{digits}f}"
  return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def write_table(runs, args):
  lines = ["# LB-SAC vs SAC-N on generated medium data (experiments/lb_sac.py)", "",
           "Commands: the docstring of experiments/lb_sac.py; each environment's table lists "
           "the settings that ran there. 3 x 64 ReLU critics and actor, Adam 3e-4 x "
           "sqrt(B / 256); threshold: 80% of the best final normalized score of any run on "
           "that data; wall time: training only (steps to the threshold x the run's median "
           "seconds per step). Mean ± sd over seeds. Speed-up: sac_n's training seconds to "
           "the threshold over the setting's (where every seed reaches it); '> x' where sac_n "
           "never reached it, against its whole training time.", ""]
  fig, axes = plt.subplots(1, len(ENVS), figsize=(6 * len(ENVS), 4), squeeze=False)
  qfig, qaxes = plt.subplots(1, len(ENVS), figsize=(6 * len(ENVS), 4), squeeze=False)
  for col, env in enumerate(ENVS):
    mine = {key: r for key, r in runs.items() if key.startswith(env + "/")}
    if not mine:
      continue
    best = max(r["final"]["normalized_score"] for r in mine.values())
    threshold = THRESHOLD_FRACTION * best
    early = sum(r["evals"][0][1] >= threshold for r in mine.values())
    lines += [f"## {env} ({ENVS[env][0]}): threshold {threshold:.1f} (best final {best:.1f})",
              "", data_line(env, args.data_dir),
              f"Runs whose first evaluation (a twelfth of the way) is already at or above the "
              f"threshold: {early} of {len(mine)}.", "",
              "| setting | N | B | updates | updates to threshold | train s to threshold | "
              "speed-up vs sac_n (s) | final score | q_random_std (final) | ms / update |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    reference = None  # sac_n's mean seconds to the threshold, or its whole run if not reached.
    reference_reached = False
    for setting, (n, b, updates, k) in SETTINGS.items():
      seeds = [r for key, r in mine.items() if key.split("/")[1] == setting]
      if not seeds:
        continue
      reach_updates, reach_seconds = [], []
      for r in seeds:
        hit = next((step for step, score, _ in r["evals"] if score >= threshold), None)
        if hit is not None:
          reach_updates.append(hit * r["updates_per_step"])
          reach_seconds.append(hit * r["seconds_per_step"])
      reached = f" ({len(reach_updates)}/{len(seeds)} reach)"
      seconds = np.mean(reach_seconds) if len(reach_seconds) == len(seeds) else None
      if setting == "sac_n":
        reference_reached = seconds is not None
        reference = seconds if reference_reached else np.mean(
            [r["evals"][-1][0] * r["seconds_per_step"] for r in seeds])
        speedup = "-"
      elif seconds is None or reference is None:
        speedup = "-"
      else:  # sac_n not reached: its whole training time bounds the speed-up from below.
        speedup = f"{'' if reference_reached else '> '}{reference / seconds:.2f}x"
      lines.append(
          f"| {setting} | {n} | {b} | {updates} | "
          f"{_fmt(reach_updates, 0) if reach_updates else 'not reached'}{reached} | "
          f"{_fmt(reach_seconds, 1) if reach_seconds else '-'} | {speedup} | "
          f"{_fmt([r['final']['normalized_score'] for r in seeds])} | "
          f"{_fmt([r['final']['q_random_std'] for r in seeds], 3)} | "
          f"{_fmt([1000 * r['seconds_per_update'] for r in seeds], 2)} |")
      for r in seeds:
        steps = [s * r["seconds_per_step"] for s, _, _ in r["evals"]]
        axes[0][col].plot(steps, [score for _, score, _ in r["evals"]],
                          color=f"C{list(SETTINGS).index(setting)}", alpha=0.8,
                          label=setting if r is seeds[0] else None)
      qaxes[0][col].scatter([b] * len(seeds), [r["final"]["q_random_std"] for r in seeds],
                            color=f"C{list(SETTINGS).index(setting)}", label=setting)
    axes[0][col].axhline(threshold, color="gray", linestyle="--", linewidth=1)
    axes[0][col].set(title=ENVS[env][0], xlabel="training seconds",
                     ylabel="normalized score")
    axes[0][col].legend()
    qaxes[0][col].set(title=ENVS[env][0], xlabel="batch size", ylabel="q_random_std (final)",
                      xscale="log")
    qaxes[0][col].legend()
    lines.append("")
  fig.tight_layout()
  fig.savefig(os.path.join(RESULTS, "curves.png"), dpi=120)
  qfig.tight_layout()
  qfig.savefig(os.path.join(RESULTS, "q_random_std.png"), dpi=120)
  with open(os.path.join(RESULTS, "table.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
