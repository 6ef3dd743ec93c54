"""Memory and time per iteration of ReMax against PPO (and the other estimators) at equal batch.

    python benchmarks/remax_vs_ppo.py [--batches 32,64,128,256,512] [--repeats 7]
                                      [--budget_mb 256] [--estimators remax,ppo,...]

The alignment step of configs/rlhf_remax.py (the 0.1M-parameter linear-attention policy,
32-byte prompts and responses), jitted on one device, for each estimator and batch of
prompts. Memory is XLA's compiled memory analysis of the step (`Compiled.memory_analysis`):
the state (policy, reference, reward model, critic, optimizer states, by part, from the
arrays) and the temporaries (activations, gradients, generation buffers); peak = arguments +
temporaries + outputs not aliased to donated inputs. The largest batch each estimator fits in
`--budget_mb` is the largest of `--batches` whose peak fits. Time is the median of
`--repeats` steps after compilation, estimators interleaved step by step so load from other
processes falls on all alike. The reward model is randomly initialised (its values do not
change the cost). Writes results/remax/benchmark.{md,json}.

The paper's claims (Li et al. 2024, §5; ReMax README, Llama-2-7B on A100-80GB): about 46% less
GPU memory and about 2× (1.6–2.1×) less time per iteration than PPO.
"""
import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from big_batch import configs
from big_batch.rlhf import align_task
from big_batch.rlhf.reward_task import new_reward_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "remax")
PARTS = ("policy", "reference", "reward", "critic", "opt_state", "critic_opt_state")


class _Data:
  splits = {}


def config_for(estimator, batch):
  config = configs.get("rlhf_remax")
  config.alignment.update(estimator=estimator, reward_workdir="(random reward model)")
  config.batch.size = batch
  config.evals = {}
  return config


def _random_reward_params(alignment, abstract):
  del alignment, abstract
  return nnx.to_pure_dict(nnx.state(new_reward_model(configs.get("rlhf_remax").model, 0)))


def mbytes(tree):
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)) / 2 ** 20


class Runner:
  """One estimator's state, donated jitted step and memory analysis at one batch size."""

  def __init__(self, estimator, batch):
    config = config_for(estimator, batch)
    task = align_task.build(config, _Data(), None, 1000)
    self.state = jax.jit(task.init)(jax.random.key(0))
    rng = np.random.default_rng(0)
    self.batch = {"inputs": jnp.asarray(rng.integers(32, 127, (batch, config.data.seq_len)),
                                        jnp.int32)}
    lowered = jax.jit(task.train_step, donate_argnums=0).lower(self.state, self.batch)
    start = time.perf_counter()
    self.step = lowered.compile()
    self.compile_seconds = time.perf_counter() - start
    m = self.step.memory_analysis()
    self.memory = {
        **{f"{p}_mb": mbytes(self.state[p]) for p in PARTS if p in self.state},
        "state_mb": mbytes(self.state),
        "temp_mb": m.temp_size_in_bytes / 2 ** 20,
        "peak_mb": (m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
                    - m.alias_size_in_bytes) / 2 ** 20}

  def time_step(self):
    start = time.perf_counter()
    self.state, metrics = self.step(self.state, self.batch)
    jax.block_until_ready(metrics)
    return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batches", default="32,64,128,256,512")
  parser.add_argument("--estimators", default="remax,ppo,reinforce,rloo")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--budget_mb", type=float, default=256.0)
  parser.add_argument("--time_batch", type=int, default=32)
  args = parser.parse_args()
  align_task.load_reward_params = _random_reward_params
  names = args.estimators.split(",")
  batches = [int(b) for b in args.batches.split(",")]
  rows = []
  for batch in batches:
    runners = {}
    for name in names:
      runners[name] = Runner(name, batch)
      print(f"batch {batch} {name}: peak {runners[name].memory['peak_mb']:.1f} MB "
            f"(compiled in {runners[name].compile_seconds:.0f} s)", flush=True)
    times = {name: [] for name in names}
    if batch == args.time_batch:
      for name in names:
        runners[name].time_step()
      for _ in range(args.repeats):
        for name in names:
          times[name].append(runners[name].time_step())
    for name in names:
      rows.append({"estimator": name, "batch": batch, **runners[name].memory,
                   "seconds_per_iteration": statistics.median(times[name]) if times[name]
                   else None})
    del runners
  largest = {name: max([r["batch"] for r in rows if r["estimator"] == name
                        and r["peak_mb"] <= args.budget_mb], default=None) for name in names}
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, "benchmark.json"), "w") as f:
    json.dump({"rows": rows, "largest_batch_in_budget": largest, "budget_mb": args.budget_mb,
               "devices": str(jax.devices()[0])}, f, indent=1)
  write_table(rows, largest, args)


def write_table(rows, largest, args):
  ppo = {r["batch"]: r for r in rows if r["estimator"] == "ppo"}
  lines = [f"Alignment step of configs/rlhf_remax.py on one CPU device "
           f"(`python benchmarks/remax_vs_ppo.py --batches {args.batches} --repeats "
           f"{args.repeats} --budget_mb {args.budget_mb:g}`).", "",
           "| estimator | batch | state MB (policy / ref / RM / critic / opt / critic opt) | "
           "temporaries MB | peak MB | peak / PPO | s / iteration | time / PPO |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    parts = " / ".join(f"{r.get(f'{p}_mb', 0.0):.2f}" for p in PARTS)
    base = ppo.get(r["batch"])
    ratio = f"{r['peak_mb'] / base['peak_mb']:.2f}" if base else "-"
    sec = r["seconds_per_iteration"]
    t_ratio = (f"{sec / base['seconds_per_iteration']:.2f}" if base and sec
               and base["seconds_per_iteration"] else "-")
    lines.append(f"| {r['estimator']} | {r['batch']} | {parts} | {r['temp_mb']:.1f} | "
                 f"{r['peak_mb']:.1f} | {ratio} | {f'{sec:.3f}' if sec else '-'} | {t_ratio} |")
  lines += ["", f"Largest batch (of {args.batches}) whose peak fits in {args.budget_mb:g} MB: "
            + ", ".join(f"{k} {v}" for k, v in largest.items())]
  with open(os.path.join(RESULTS, "benchmark.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
