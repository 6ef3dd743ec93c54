"""ReMax (Li et al. 2024) against REINFORCE, moving-mean, RLOO, group-mean and PPO baselines
on a small RLHF pipeline: learning curves, gradient variance, cost.

    python experiments/remax.py [--seeds 0 1 2] [--steps 100] [--workdir /tmp/remax_exp]
                                [--estimators ...] [--summarize]

Stages, every one a config of the trainer (configs/lm_lasp.py, configs/rlhf_reward_model.py,
configs/rlhf_remax.py), run on one CPU device:
  1. pretrain: the byte-level linear-attention LM of configs/lm_lasp.py at dim 64 with
     single-device attention on pydoc_text (`--lm_steps` steps of 32 x 256 bytes);
  2. reward model: that body with a scalar head, Bradley-Terry on prose-score-ranked pairs
     (`--rm_steps` steps of 64 pairs), held-out pairwise accuracy;
  3. alignment: every estimator x seed for `--steps` steps of 32 prompts (32 bytes) and
     32-byte responses, policy and reference warm-started from stage 1, reward from stage 2;
     each step's metrics and wall time, and the `validation` evaluator at the end.
Gradient variance: at the pretrained policy (θ = θ_ref, so the KL term is 0), for
`--variance_prompts` prompts each estimator's one-prompt gradient g_x (one sample; RLOO /
group-mean two; ReMax a sample and the greedy response; PPO its GAE advantages with the
critic initialised from the reward model; the moving mean at its fixed point, the mean reward
over the prompts), tr Cov = mean_x ||g_x − ḡ||², with the reward as trained and with
heterogeneous per-prompt scales, r'(x, a) = s_x r(x, a) + o_x, s_x log-uniform in [1/4, 4],
o_x ~ N(0, 1).

Writes results/remax/{table.md, results.json, curves.png, variance.png}; finished stages and
runs are read back from the workdir and results.json, not rerun.
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

from big_batch import configs, tasks, train  # noqa: E402
from big_batch.data import datasets, pipeline  # noqa: E402
from big_batch.parallel import mesh as mesh_lib  # noqa: E402
from big_batch.rlhf import estimators, generation, returns  # noqa: E402
from big_batch.rlhf.reward import sequence_reward  # noqa: E402
from big_batch.train import init_from  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "remax")
ESTIMATORS = ("remax", "reinforce", "moving_mean", "rloo", "group_mean", "ppo")
COLORS = dict(remax="C3", reinforce="C7", moving_mean="C1", rloo="C2", group_mean="C4",
              ppo="C0")


def say(message):
  print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def summary_of(workdir):
  path = os.path.join(workdir, "summary.json")
  return json.load(open(path)) if os.path.exists(path) else None


def pretrain(workdir, steps, data_dir):
  config = configs.get("lm_lasp")
  config.data.data_dir = data_dir
  config.model.update(dim=64, sequence_parallel="blockwise")
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.num_steps, config.checkpoint_every = steps, steps
  config.optimizer.warmup_steps = min(40, steps // 5)
  config.evals.validation.every = steps
  return summary_of(workdir) or train.run(config, workdir, devices=jax.devices()[:1])


def reward_model(workdir, lm_workdir, steps, data_dir):
  config = configs.get("rlhf_reward_model")
  config.data.data_dir = data_dir
  config.init_from.workdir = lm_workdir
  config.num_steps, config.checkpoint_every = steps, steps
  config.evals.validation.every = steps
  return summary_of(workdir) or train.run(config, workdir, devices=jax.devices()[:1])


def align_config(estimator, seed, steps, lm_workdir, rm_workdir, data_dir):
  config = configs.get("rlhf_remax")
  config.seed = seed
  config.data.data_dir = data_dir
  config.alignment.update(estimator=estimator, reward_workdir=rm_workdir)
  config.init_from.workdir = lm_workdir
  config.num_steps = steps
  return config


def build(config):
  devices = jax.devices()[:1]
  train.validate(config, len(devices))
  mesh = mesh_lib.create(config.mesh, devices)
  data = datasets.load(config.data)
  task = tasks.build(config, data, mesh, config.num_steps)
  state = jax.jit(task.init)(jax.random.key(config.seed))
  state, _ = init_from.warm_start(state, jax.eval_shape(lambda: state), config.init_from)
  return data, task, state


def align(config):
  """Per-step metrics and wall time of one alignment run, and its final evaluation."""
  data, task, state = build(config)
  step = jax.jit(task.train_step, donate_argnums=0)
  n, size = data.train.num_examples, config.batch.size
  curves, start = [], time.perf_counter()
  for i in range(config.num_steps):
    batch = data.train.read(pipeline.stream_indices(config.seed, i * size, size, n))
    state, metrics = step(state, batch)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    curves.append({**metrics, "seconds": time.perf_counter() - start})
  compile_and_first = curves[0]["seconds"]
  steady = (curves[-1]["seconds"] - compile_and_first) / max(len(curves) - 1, 1)
  return {"curves": curves, "seconds_per_iteration": steady,
          "evals": task.evaluators["validation"](state)}


def initial_eval(config):
  _, task, state = build(config)
  return task.evaluators["validation"](state)


# ---- gradient variance at a fixed policy ---------------------------------------------------

def variance_functions(config, state):
  """(rewards(prompts, scale, offset, key), grads(prompts, scale, offset, key, mean_reward))
  jitted: the sampled rewards, and {estimator: one-prompt gradients [M, n_params]}."""
  from big_batch.rlhf.align_task import Models
  al = config.alignment
  nets = Models(config)
  policy = nets.policy(state["policy"])
  rm = nets.reward_model(state["reward"])

  def rollouts(prompts, scale, offset, key):
    out = []
    for k, greedy in zip(jax.random.split(key, 3), (False, False, True)):
      tokens, mask = generation.generate(policy, prompts, k, al.response_len, greedy=greedy,
                                         temperature=al.temperature, top_p=al.top_p)
      out.append((tokens, mask, scale * sequence_reward(rm, prompts, tokens, mask) + offset))
    return out

  def shaped(advantage, mask):
    # θ = θ_ref, so the KL term of the returns is 0: log π = log π_ref.
    zeros = jnp.zeros(mask.shape)
    return returns.kl_shaped_returns(zeros, zeros, mask, advantage, kl_coef=al.kl_coef,
                                     gamma=al.gamma, reward_clip=al.reward_clip)

  def grad_one(prompt, tokens, mask, weights):
    """∇ −L of one prompt's responses [k, R] (the estimator's gradient), flattened."""
    prompts = jnp.repeat(prompt[None], tokens.shape[0], 0)
    g = jax.grad(lambda p: -estimators.policy_gradient_loss(
        generation.response_log_probs(nets.policy(p), prompts, tokens), weights, mask))(
            state["policy"])
    return jax.flatten_util.ravel_pytree(g)[0]

  def per_prompt(prompts, tokens, mask, weights):
    return jax.vmap(grad_one)(prompts, tokens, mask, weights)

  @jax.jit
  def rewards(prompts, scale, offset, key):
    return rollouts(prompts, scale, offset, key)[0][2]

  @jax.jit
  def grads(prompts, scale, offset, key, mean_reward):
    (tokens, mask, r), (tokens2, mask2, r2), (_, _, r_greedy) = rollouts(prompts, scale,
                                                                          offset, key)
    one = lambda x: x[:, None]
    out = {name: per_prompt(prompts, one(tokens), one(mask), one(shaped(adv, mask)))
           for name, adv in (("reinforce", r), ("moving_mean", r - mean_reward),
                             ("remax", r - r_greedy))}
    pair_tokens, pair_mask = jnp.stack([tokens, tokens2], 1), jnp.stack([mask, mask2], 1)
    m, length = tokens.shape
    for name in estimators.GROUP_ESTIMATORS:
      adv, _ = estimators.baselines(name, jnp.stack([r, r2], 1).reshape(-1), group_size=2,
                                    normalize=al.group_normalize)
      weights = shaped(adv, pair_mask.reshape(2 * m, length)).reshape(m, 2, length)
      out[name] = per_prompt(prompts, pair_tokens, pair_mask, weights)
    # PPO at ratio 1: the clipped loss's gradient is that of −Σ Â log π / Σ m.
    sequence = jnp.concatenate([prompts, tokens], 1)[:, :-1]
    values = nets.reward_model(state["critic"])(sequence)[:, prompts.shape[1] - 1:]
    zeros = jnp.zeros(mask.shape)
    rho = returns.ppo_rewards(zeros, zeros, mask, r, kl_coef=al.kl_coef,
                              reward_clip=al.reward_clip)
    advantages, _ = returns.gae(rho, values, mask, gamma=al.ppo.gamma, lam=al.ppo.lam)
    out["ppo"] = per_prompt(prompts, one(tokens), one(mask), one(advantages))
    return out

  return rewards, grads


def gradient_variance(config, prompts, heterogeneous: bool, chunk_size=32):
  """{estimator: tr Cov of the one-prompt gradient} at the warm-started policy."""
  import jax.flatten_util  # noqa: F401  (ravel_pytree)
  _, _, state = build(config)
  m = prompts.shape[0]
  rng = np.random.default_rng(0)
  scale = np.exp(rng.uniform(np.log(0.25), np.log(4.0), m)) if heterogeneous else np.ones(m)
  offset = rng.normal(size=m) if heterogeneous else np.zeros(m)
  rewards, grads = variance_functions(config, state)
  chunks = [(jnp.asarray(prompts[i:i + chunk_size]),
             jnp.asarray(scale[i:i + chunk_size], jnp.float32),
             jnp.asarray(offset[i:i + chunk_size], jnp.float32), jax.random.key(i))
            for i in range(0, m, chunk_size)]
  # The moving mean at its fixed point: the mean reward over the prompts.
  mean_reward = float(np.mean(np.concatenate([np.asarray(rewards(*c)) for c in chunks])))
  collected = {}
  for c in chunks:
    for name, g in grads(*c, mean_reward).items():
      collected.setdefault(name, []).append(np.asarray(g, np.float64))
  out = {}
  for name, parts in collected.items():
    g = np.concatenate(parts)
    out[name] = float(((g - g.mean(0)) ** 2).sum(1).mean())
  return out


# ---- table and figures ---------------------------------------------------------------------

def mean_std(values):
  values = np.asarray(values, float)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def write_outputs(results, args):
  runs = results["runs"]
  names = [e for e in ESTIMATORS if any(r["estimator"] == e for r in runs.values())]
  fig, axes = plt.subplots(1, 4, figsize=(20, 4))
  for name in names:
    rs = [r for r in runs.values() if r["estimator"] == name]
    steps = np.arange(1, len(rs[0]["curves"]) + 1)
    for ax, key in zip(axes[[0, 2, 3]], ("reward", "ground_truth", "kl")):
      y = np.array([[c[key] for c in r["curves"]] for r in rs])
      smooth = np.array([np.convolve(row, np.ones(5) / 5, mode="valid") for row in y])
      x = steps[4:]
      ax.plot(x, smooth.mean(0), color=COLORS[name], label=name)
      ax.fill_between(x, smooth.min(0), smooth.max(0), color=COLORS[name], alpha=0.15)
    for r in rs:
      t = np.array([c["seconds"] for c in r["curves"]])
      t = t - t[0]  # from the end of the first step: compilation excluded
      y = np.array([c["reward"] for c in r["curves"]])
      axes[1].plot(t[4:], np.convolve(y, np.ones(5) / 5, mode="valid"), color=COLORS[name],
                   alpha=0.7, label=name if r is rs[0] else None)
  for ax, (xl, yl) in zip(axes, [("iteration", "reward (RM), sampled"),
                                 ("wall time after the first step (s)", "reward (RM), sampled"),
                                 ("iteration", "prose score (ground truth), sampled"),
                                 ("iteration", "KL(π‖π_ref) per response")]):
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
  axes[0].legend()
  fig.suptitle(f"{len(args.seeds)} seeds, batch 32 prompts; 5-step moving average, band = "
               "min-max over seeds")
  fig.tight_layout()
  fig.savefig(os.path.join(RESULTS, "curves.png"), dpi=110)
  plt.close(fig)
  if "variance" in results:
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.4
    for j, (label, v) in enumerate(results["variance"].items()):
      ks = [k for k in ESTIMATORS if k in v]
      ax.bar(np.arange(len(ks)) + j * width, [v[k] for k in ks], width, label=label)
      ax.set_xticks(np.arange(len(ks)) + width / 2, ks)
    ax.set_yscale("log")
    ax.set_ylabel("tr Cov of the one-prompt gradient")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, "variance.png"), dpi=110)
    plt.close(fig)
  write_table(results, names, args)


def write_table(results, names, args):
  runs = results["runs"]
  lm, rm = results["lm"], results["reward_model"]
  lines = [
      f"Produced by `python experiments/remax.py --seeds {' '.join(map(str, args.seeds))} "
      f"--steps {args.steps} --lm_steps {args.lm_steps} --rm_steps {args.rm_steps}` on one "
      "CPU device (2 cores shared with other jobs).", "",
      f"Pretrained policy (configs/lm_lasp.py, dim 64, {args.lm_steps} steps): validation "
      f"{lm['bits_per_byte']:.2f} bits per byte, {lm['accuracy']:.1%} next-byte accuracy.",
      f"Reward model ({args.rm_steps} steps, Bradley-Terry): held-out pairwise accuracy "
      f"{rm['accuracy']:.1%} against the prose score (loss {rm['loss']:.3f}).", "",
      f"Before alignment (validation prompts, seed 0): reward sampled "
      f"{results['initial']['reward_sampled']:.3f}, greedy "
      f"{results['initial']['reward_greedy']:.3f}; prose score sampled "
      f"{results['initial']['ground_truth_sampled']:.3f}, greedy "
      f"{results['initial']['ground_truth_greedy']:.3f}.", "",
      f"Alignment, {args.steps} iterations of 32 prompts, mean ± std over seeds. Train columns "
      "average the last 10 iterations; eval columns are the validation evaluator at the end "
      "(held-out prompts, fixed key); 'step-to-step std' is the std of the reward's "
      "iteration-to-iteration change (noise); s/iter excludes compilation.", "",
      "| estimator | train reward | eval reward sampled | eval reward greedy | eval prose "
      "score sampled | KL | grad norm | step-to-step std | s / iter |",
      "|---|---|---|---|---|---|---|---|---|"]
  for name in names:
    rs = [r for r in runs.values() if r["estimator"] == name]
    def tail(key):
      return mean_std([np.mean([c[key] for c in r["curves"][-10:]]) for r in rs])
    def ev(key):
      return mean_std([r["evals"][key] for r in rs])
    noise = mean_std([np.std(np.diff([c["reward"] for c in r["curves"]])) for r in rs])
    cells = [tail("reward"), ev("reward_sampled"), ev("reward_greedy"),
             ev("ground_truth_sampled"), ev("kl"), tail("grad_norm"), noise,
             mean_std([r["seconds_per_iteration"] for r in rs])]
    lines.append(f"| {name} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in cells) + " |")
  if "variance" in results:
    lines += ["", "Gradient variance at the pretrained policy (tr Cov of the one-prompt "
              f"gradient over {args.variance_prompts} prompts; ratio to REINFORCE):", "",
              "| estimator | " + " | ".join(results["variance"]) + " |",
              "|---|" + "---|" * len(results["variance"])]
    for name in ESTIMATORS:
      cells = []
      for v in results["variance"].values():
        cells.append(f"{v[name]:.3g} ({v[name] / v['reinforce']:.2f})" if name in v else "-")
      lines.append(f"| {name} | " + " | ".join(cells) + " |")
  with open(os.path.join(RESULTS, "table.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines), flush=True)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--lm_steps", type=int, default=300)
  parser.add_argument("--rm_steps", type=int, default=300)
  parser.add_argument("--variance_prompts", type=int, default=128)
  parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
  parser.add_argument("--workdir", default="/tmp/remax_exp")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--summarize", action="store_true")
  args = parser.parse_args()
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, "results.json")
  results = json.load(open(path)) if os.path.exists(path) else {"runs": {}}
  save = lambda: json.dump(results, open(path, "w"), indent=1)
  if args.summarize:
    write_outputs(results, args)
    return
  lm_dir, rm_dir = (os.path.join(args.workdir, d) for d in ("lm", "rm"))
  start = time.perf_counter()
  say("stage 1: pretraining the policy LM")
  results["lm"] = pretrain(lm_dir, args.lm_steps, args.data_dir)["evals"]["validation"]
  say(f"  validation {results['lm']}")
  say("stage 2: reward model")
  results["reward_model"] = reward_model(rm_dir, lm_dir, args.rm_steps,
                                         args.data_dir)["evals"]["validation"]
  say(f"  held-out {results['reward_model']}")
  save()
  config0 = align_config("remax", args.seeds[0], args.steps, lm_dir, rm_dir, args.data_dir)
  if "initial" not in results:
    results["initial"] = initial_eval(config0)
    save()
  todo = [(e, s) for s in args.seeds for e in args.estimators
          if f"{e}/{s}" not in results["runs"]]
  for i, (estimator, seed) in enumerate(todo):
    run_start = time.perf_counter()
    out = align(align_config(estimator, seed, args.steps, lm_dir, rm_dir, args.data_dir))
    results["runs"][f"{estimator}/{seed}"] = {"estimator": estimator, "seed": seed, **out}
    save()
    took = time.perf_counter() - run_start
    say(f"stage 3 [{i + 1}/{len(todo)}] {estimator} seed {seed}: {took:.0f} s, eval "
        f"reward {out['evals']['reward_sampled']:.3f}, prose {out['evals']['ground_truth_sampled']:.3f}; "
        f"ETA {took * (len(todo) - i - 1) / 60:.1f} min")
  if "variance" not in results:
    say("gradient variance")
    config = align_config("ppo", 0, args.steps, lm_dir, rm_dir, args.data_dir)
    data = datasets.load(config.data)
    prompts = data.train.read(np.arange(args.variance_prompts))["inputs"]
    results["variance"] = {
        "as trained": gradient_variance(config, prompts, heterogeneous=False),
        "heterogeneous scales": gradient_variance(config, prompts, heterogeneous=True)}
    save()
  say(f"done in {(time.perf_counter() - start) / 60:.1f} min")
  write_outputs(results, args)


if __name__ == "__main__":
  main()
