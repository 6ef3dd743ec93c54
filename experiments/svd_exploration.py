"""SVD pseudo-count exploration (Chandak et al., ICML 2023) against epsilon-greedy, true counts
and RND, and the spectral objective's subspace quality against the mini-batch size.

    nice -n 10 python experiments/svd_exploration.py [--seeds 0 1 2 3 4] [--envs ...]
                                                     [--methods ...] [--summarize]

Part 1 (exploration): tabular Q-learning from replay (rl/agent.py, the settings of
configs/svd_exploration.py: 4 envs x 4 steps per update, 4 Q steps of 16 + 256 rows, beta 0.5,
epsilon 0.05, gamma 0.99) with the bonus on the next state:
  none        epsilon-greedy only (Q starts at 0, as for the bonuses)
  optimistic  no bonus, Q starts at beta / (1 - gamma): the control for tabular optimism
  true_count  beta / sqrt(n(s') + 1), n the exact visit count (the oracle)
  svd         beta / sqrt(n^(s') + 1), n^ the SVD pseudo-count (rl/counts.py) of a rank-64
              representation trained online (4 Adam steps of 256 replay rows per update)
  rnd         beta * RND error / its mean on the first replay batch
  <bonus>+opt the bonus with Q starting at beta / (1 - gamma)
on deep sea 16 x 16 (reward only at the bottom-right: 2^-15 per episode for a uniform
policy), four rooms (104 cells, goal in the far corner) and MiniGrid FourRooms (1040 agent
states; the SVD and RND networks see only the 7x7 egocentric view, flattened: an MLP on
partially observed pixels; true counts use the hidden state). Seeds are vmapped. Recorded:
env steps to the first reward (time to goal), coverage of the reachable states against env
steps, and for svd the Spearman correlation of the pseudo-counts with the true counts and
the subspace quality against the exact SVD of the replay's D P^pi.

Part 2 (mini-batch size): the spectral objective fitted offline (rl/offline_fit.py, 3000
Adam steps) to 32k four-rooms transitions of a behaviour policy skewed to the right and down,
rank 8, for batch sizes 8 ... 1024 (transitions, anchors and negatives each): the largest
principal angle to the exact top-8 subspace, reconstruction error over Eckart-Young's, and
the pseudo-count Spearman at rank 16.

Part 3 (partial observability, rl/history_encoder.py): on MiniGrid-Empty-8x8's aliased views,
a GRU history encoder trained with the spectral objective on (history, 3-step future)
pairs, for history lengths 1 (the current view only), 2, 4, 8: 5-NN accuracy of the hidden
state from phi(h), against the best accuracy any function of the current view can reach.

Writes results/svd_exploration/{table.md, results.json, exploration.png, batch_size.png};
finished parts are read back from results.json unless --rerun.
"""
import argparse
import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from big_batch.configs import svd_exploration as recipe  # noqa: E402
from big_batch.rl import agent as agent_lib  # noqa: E402
from big_batch.rl import counts, exploration_task, offline_fit, tabular_envs  # noqa: E402
from big_batch.rl import svd_representation as svd  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "svd_exploration")
ENVS = {"deep_sea_16": 1500, "four_rooms": 1500, "minigrid_FourRooms": 1500}  # updates
METHODS = ("none", "optimistic", "true_count", "svd", "rnd", "true_count+opt", "svd+opt",
           "rnd+opt")
# MiniGrid: the networks see the partial view; the tabular ones use one-hot states.
ENCODING = {"minigrid_FourRooms": dict(encoder="mlp", observation="pixels")}
RECORD_EVERY = 25
BATCH_SIZES = (8, 32, 128, 512, 1024)
HISTORIES = (1, 2, 4, 8)


def agent_config(env_name: str, bonus: str):
  """(AgentConfig, negatives per update) of configs/svd_exploration.py for this run."""
  config = recipe.get_config()
  config.exploration.bonus = "none" if bonus == "optimistic" else bonus.replace("+opt", "")
  config.exploration.optimistic = bonus == "optimistic" or bonus.endswith("+opt")
  config.representation.update(ENCODING.get(env_name, {}))
  return exploration_task.agent_config(config), config.batch.size


def run_exploration(env_name: str, bonus: str, seeds, updates=None) -> dict:
  env = tabular_envs.make(env_name)
  cfg, negatives = agent_config(env_name, bonus)
  agent = agent_lib.Agent(env, cfg)
  updates = updates or ENVS[env_name]

  def run(seed):
    state = agent.init(jax.random.key(seed))

    def body(state, key):
      state, metrics = agent.update(state, jax.random.randint(key, (negatives,), 0,
                                                              env.num_states))
      return state, (metrics["coverage"], metrics["first_goal"])

    state, curves = jax.lax.scan(body, state,
                                 jax.random.split(jax.random.key(1000 + seed), updates))
    return state, curves

  start = time.time()
  states, (coverage, first_goal) = jax.jit(jax.vmap(run))(jnp.asarray(seeds))
  jax.block_until_ready(coverage)
  steps_per_update = cfg.num_envs * cfg.rollout
  out = {"env_steps": (np.arange(0, updates, RECORD_EVERY) + 1).tolist(),
         "steps_per_update": steps_per_update,
         "coverage": np.asarray(coverage)[:, ::RECORD_EVERY].tolist(),
         "time_to_goal": [float(x) for x in agent_lib.time_to_goal(states["first_goal"])],
         "final_coverage": np.asarray(coverage)[:, -1].tolist(),
         "total_env_steps": updates * steps_per_update, "seconds": time.time() - start}
  out["env_steps"] = [s * steps_per_update for s in out["env_steps"]]
  if bonus.startswith("svd"):
    quality = [exploration_task.representation_quality(agent,
                                                       jax.tree.map(lambda x: x[i], states))
               for i in range(len(seeds))]
    out["quality"] = {k: [q[k] for q in quality] for k in quality[0]}
  return out


def run_batch_sizes(seeds) -> dict:
  env = tabular_envs.four_rooms()
  s, _, t = tabular_envs.behaviour_transitions(env, (0.15, 0.35, 0.35, 0.15),
                                               jax.random.key(0), 32, 1000)
  s, t = np.asarray(s), np.asarray(t)
  m = svd.empirical_dp(s, t, env.num_states)
  visits = np.bincount(s, minlength=env.num_states)
  out = {}
  for batch in BATCH_SIZES:
    start = time.time()
    rows = {"angle": [], "error_ratio": [], "spearman": []}
    for rank in (8, 16):
      fit = jax.jit(jax.vmap(lambda key: offline_fit.fit(s, t, env.num_states, "table", rank,
                                                          key, batch=batch)))
      phis, psis = fit(jax.random.split(jax.random.key(0), len(seeds)))
      u, sv, v = svd.top_k_svd(m, rank)
      exact = svd.reconstruction_error(u * sv, v, m)
      for phi, psi in zip(np.asarray(phis), np.asarray(psis)):
        if rank == 8:
          rows["angle"].append(float(np.degrees(svd.principal_angles(phi, u)[-1])))
          rows["error_ratio"].append(svd.reconstruction_error(phi, psi, m) / exact)
        else:
          pseudo = counts.pseudo_counts(jnp.asarray(phi), jnp.asarray(psi.T @ psi), len(s))
          rows["spearman"].append(float(stats.spearmanr(np.asarray(pseudo),
                                                        visits).correlation))
    rows["seconds"] = time.time() - start
    out[str(batch)] = rows
    print(f"batch {batch}: angle {np.mean(rows['angle']):.1f} deg, error ratio "
          f"{np.mean(rows['error_ratio']):.3f}, spearman {np.mean(rows['spearman']):.3f} "
          f"({rows['seconds']:.0f} s)", flush=True)
  return out


def run_pomdp(seeds) -> dict:
  """Part 3: 5-NN accuracy of the hidden state from phi(h) against history length."""
  from sklearn.neighbors import KNeighborsClassifier  # noqa: PLC0415
  from big_batch.rl import history_encoder as he  # noqa: PLC0415
  env = tabular_envs.make("minigrid_Empty-8x8")
  obs = tabular_envs.observations(env, "pixels")
  s, a, t = tabular_envs.behaviour_transitions(env, (0.25, 0.25, 0.5), jax.random.key(0), 32,
                                               500)
  out = {}
  for length in HISTORIES:
    start = time.time()
    hist, fut, hidden = he.windows(env, obs, s, a, t, 32, history=length, future=3)
    train = np.arange(len(hidden)) < int(0.8 * len(hidden))
    fit = jax.jit(jax.vmap(lambda key: he.fit(hist[train], fut[train], 32, key, 2000)))
    params = fit(jax.random.split(jax.random.key(1), len(seeds)))
    accuracy = []
    for i in range(len(seeds)):
      phi = np.asarray(he.encode_history(jax.tree.map(lambda x: x[i], params), hist))
      knn = KNeighborsClassifier(5).fit(phi[train], hidden[train])
      accuracy.append(float(knn.score(phi[~train], hidden[~train])))
    view = np.unique(obs, axis=0, return_inverse=True)[1].reshape(-1)[hidden]
    out[str(length)] = {"accuracy": accuracy, "windows": int(len(hidden)),
                        "bound": he.observation_bayes_accuracy(view[~train], hidden[~train]),
                        "seconds": time.time() - start}
    print(f"history {length}: 5-NN accuracy {np.mean(accuracy):.3f}, observation bound "
          f"{out[str(length)]['bound']:.3f} ({out[str(length)]['seconds']:.0f} s)", flush=True)
  return out


def fmt(values, digits=2):
  values = np.asarray(values, np.float64)
  return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def time_to_goal_cell(values, budget):
  values = np.asarray(values, np.float64)
  found = np.isfinite(values)
  if not found.any():
    return f"never (0/{len(values)} in {budget})"
  return f"{np.median(np.where(found, values, budget)):.0f} ({found.sum()}/{len(values)})"


def table(results) -> str:
  lines = ["# SVD pseudo-count exploration (Chandak et al. 2023) at small scale", "",
           "Made by `nice -n 10 python experiments/svd_exploration.py` "
           f"(seeds {results.get('seeds')}); numbers from the runs in results.json.", "",
           "## Exploration", "",
           "Time to goal: median env steps to the first reward over seeds (a seed that never "
           "found it counts as the budget), with how many found it. Coverage: fraction of the "
           "reachable states visited by the end (mean ± std over seeds).", "",
           "| environment | bonus | time to goal | final coverage | wall s |",
           "|---|---|---|---|---|"]
  for env_name, runs in results.get("exploration", {}).items():
    for method in METHODS:
      if method not in runs:
        continue
      r = runs[method]
      lines.append(f"| {env_name} | {method} | "
                   f"{time_to_goal_cell(r['time_to_goal'], r['total_env_steps'])} | "
                   f"{fmt(r['final_coverage'])} | {r['seconds']:.0f} |")
  lines += ["", "SVD representation at the end of the svd runs, against the exact SVD of the "
            "replay's empirical D P^pi (the chain with resets): Spearman of pseudo-counts and "
            "true counts; largest principal angle (deg) between the exact top-4 left singular "
            "vectors and span(phi); share of the exact top-64 energy inside span(phi); "
            "reconstruction error learned / exact rank 64.", "",
            "| environment | count Spearman | top-4 angle | energy captured | error (learned / exact) |",
            "|---|---|---|---|---|"]
  for env_name, runs in results.get("exploration", {}).items():
    for method in ("svd", "svd+opt"):
      if method not in runs or "quality" not in runs[method]:
        continue
      q = runs[method]["quality"]
      lines.append(f"| {env_name} ({method}) | {fmt(q['count_spearman'])} | {fmt(q['top4_max_angle'], 1)} "
                   f"| {fmt(q['energy_captured'])} | {fmt(q['reconstruction_error'])} / "
                   f"{fmt(q['exact_reconstruction_error'])} |")
  if "batch_sizes" in results:
    lines += ["", "## Subspace quality against the mini-batch size", "",
              "Four rooms, 32k transitions of the skewed behaviour policy, 3000 Adam steps "
              "(lr 1e-2, cosine), embedding tables; mean ± std over seeds.", "",
              "| batch | top-8 max principal angle (deg) | error / Eckart-Young (rank 8) | "
              "count Spearman (rank 16) |", "|---|---|---|---|"]
    for batch, r in results["batch_sizes"].items():
      lines.append(f"| {batch} | {fmt(r['angle'], 1)} | {fmt(r['error_ratio'], 3)} | "
                   f"{fmt(r['spearman'])} |")
  if "pomdp" in results:
    lines += ["", "## Partial observability: history encoder", "",
              "MiniGrid-Empty-8x8 (144 agent states, 86 distinct 7x7 views), 16k steps of a "
              "random policy (left, right, forward w.p. 1/4, 1/4, 1/2); GRU over L steps of "
              "(view, action), future = 3 steps of (action, view), rank 32, 2000 Adam steps. "
              "Accuracy of a 5-NN classifier of the hidden state from phi(h) on held-out "
              "windows (mean ± std over seeds), against the best accuracy of any function of "
              "the current view alone.", "",
              "| history L | 5-NN accuracy | observation-only bound |", "|---|---|---|"]
    for length, r in results["pomdp"].items():
      lines.append(f"| {length} | {fmt(r['accuracy'], 3)} | {r['bound']:.3f} |")
  return "\n".join(lines) + "\n"


def plot(results):
  exploration = results.get("exploration", {})
  if exploration:
    fig, axes = plt.subplots(2, len(exploration), figsize=(5 * len(exploration), 7),
                             squeeze=False)
    for col, (env_name, runs) in enumerate(exploration.items()):
      for method, r in runs.items():
        x = np.asarray(r["env_steps"])
        cov = np.asarray(r["coverage"])
        line, = axes[0, col].plot(x, cov.mean(0), label=method)
        axes[0, col].fill_between(x, cov.min(0), cov.max(0), alpha=0.15, color=line.get_color())
        found = np.asarray(r["time_to_goal"])
        axes[1, col].plot(x, [(found <= s).mean() for s in x], label=method)
      axes[0, col].set_title(env_name)
      axes[0, col].set_ylabel("coverage")
      axes[1, col].set_ylabel("fraction of seeds that found the goal")
      axes[1, col].set_xlabel("env steps")
      axes[0, col].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "exploration.png"), dpi=100)
    plt.close(fig)
  if "batch_sizes" in results:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    sizes = [int(b) for b in results["batch_sizes"]]
    for ax, key, name in zip(axes, ("angle", "error_ratio", "spearman"),
                             ("top-8 max angle (deg)", "error / exact", "count Spearman")):
      values = [results["batch_sizes"][str(b)][key] for b in sizes]
      ax.errorbar(sizes, [np.mean(v) for v in values], [np.std(v) for v in values], marker="o")
      ax.set_xscale("log")
      ax.set_xlabel("mini-batch size")
      ax.set_ylabel(name)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "batch_size.png"), dpi=100)
    plt.close(fig)


def main():
  global RESULTS
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
  parser.add_argument("--envs", nargs="+", default=list(ENVS))
  parser.add_argument("--methods", nargs="+", default=list(METHODS))
  parser.add_argument("--summarize", action="store_true")
  parser.add_argument("--rerun", action="store_true")
  parser.add_argument("--skip_batch_sizes", action="store_true")
  parser.add_argument("--skip_pomdp", action="store_true")
  parser.add_argument("--updates", type=int, default=None, help="override (smoke tests)")
  parser.add_argument("--out", default=None, help="default results/svd_exploration")
  args = parser.parse_args()
  RESULTS = args.out or RESULTS
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, "results.json")
  results = json.load(open(path)) if os.path.exists(path) else {}
  results["seeds"] = args.seeds

  def save():
    with open(path, "w") as f:
      json.dump(results, f, indent=1)
    with open(os.path.join(RESULTS, "table.md"), "w") as f:
      f.write(table(results))
    plot(results)

  if not args.summarize:
    jobs = [(e, m) for e in args.envs for m in args.methods]
    start = time.time()
    for i, (env_name, method) in enumerate(jobs):
      if not args.rerun and method in results.get("exploration", {}).get(env_name, {}):
        continue
      r = run_exploration(env_name, method, args.seeds, args.updates)
      results.setdefault("exploration", {}).setdefault(env_name, {})[method] = r
      done = time.time() - start
      print(f"[{i + 1}/{len(jobs)}] {env_name} {method}: time to goal {r['time_to_goal']}, "
            f"coverage {np.mean(r['final_coverage']):.3f} ({r['seconds']:.0f} s; elapsed "
            f"{done / 60:.1f} min, ETA {done / (i + 1) * (len(jobs) - i - 1) / 60:.1f} min)",
            flush=True)
      save()
    if not args.skip_batch_sizes and (args.rerun or "batch_sizes" not in results):
      results["batch_sizes"] = run_batch_sizes(args.seeds)
      save()
    if not args.skip_pomdp and (args.rerun or "pomdp" not in results):
      results["pomdp"] = run_pomdp(args.seeds)
  save()
  print(table(results))


if __name__ == "__main__":
  main()
