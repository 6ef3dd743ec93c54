"""Q-ensemble update cost: vectorized vs a Python loop over critics, and vs batch size.

  python benchmarks/q_ensemble.py [--quick]

(1) The critic step of SAC-N (loss, gradient and Adam update of N critics, 3 x 256 ReLU
layers, HalfCheetah's shapes: 17-d observations, 6-d actions) at batch 256 for N in
2 ... 50: the ensemble as one vmapped module (`rl.q_ensemble.EnsembleCritic`, parameters
stacked on an ensemble axis) vs the same parameters applied critic by critic in a Python
loop (N matmul chains unrolled into the program). (2) A whole SAC-N update (temperature,
actor, N = 10 critics, targets) at batch 256 ... 16384: ms per update, updates and samples
per second, and the cost relative to batch 256; printed last: the largest batch whose update
costs at most 2x the batch-256 update (LB-SAC's premise: on parallel hardware a larger batch
is nearly free). Timings are medians of interleaved repeats in this process, on this
machine's CPU devices.
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from big_batch.rl import losses
from big_batch.rl.q_ensemble import MLP, EnsembleCritic
from big_batch.rl.sac_n import Agent, Hyperparameters

OBS, ACT, HIDDEN, LAYERS = 17, 6, 256, 3


def _batch(rows, seed=0):
  rng = np.random.default_rng(seed)
  return {"observation": jnp.asarray(rng.normal(size=(rows, OBS)), jnp.float32),
          "action": jnp.asarray(rng.uniform(-1, 1, (rows, ACT)), jnp.float32),
          "reward": jnp.asarray(rng.normal(size=rows), jnp.float32),
          "next_observation": jnp.asarray(rng.normal(size=(rows, OBS)), jnp.float32),
          "terminal": jnp.zeros(rows, jnp.float32)}


def critic_steps(n: int):
  """(vectorized step, looped step, params, opt_state): one critic update each."""
  ensemble = EnsembleCritic(OBS, ACT, num_critics=n, hidden=HIDDEN, num_layers=LAYERS,
                            rngs=nnx.Rngs(0))
  graph, state = nnx.split(ensemble)
  params = state.to_pure_dict()
  single = nnx.split(MLP(OBS + ACT, 1, hidden=HIDDEN, num_layers=LAYERS, rngs=nnx.Rngs(1)))[0]
  tx = optax.adam(3e-4)

  def vectorized_q(p, s, a):
    return nnx.merge(graph, nnx.State(p))(s, a)

  def looped_q(p, s, a):
    x = jnp.concatenate([s, a], -1)
    return jnp.stack([nnx.merge(single, nnx.State(jax.tree.map(lambda v: v[j], p["q"])))(x)[:, 0]
                      for j in range(n)])

  def step(q_fn):
    def update(p, opt_state, batch, target):
      loss, grads = jax.value_and_grad(
          lambda p: losses.critic_loss(q_fn(p, batch["observation"], batch["action"]), target))(p)
      updates, opt_state = tx.update(grads, opt_state, p)
      return optax.apply_updates(p, updates), opt_state, loss
    return jax.jit(update, donate_argnums=(0, 1))

  return step(vectorized_q), step(looped_q), params, tx


def _median_ms(fns, repeats):
  """Median wall ms per call of each fn (interleaved; each fn returns something to block)."""
  times = [[] for _ in fns]
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[i].append(1000 * (time.perf_counter() - start))
  return [statistics.median(t) for t in times]


def ensemble_table(sizes, repeats):
  print("(1) critic step at batch 256: vectorized ensemble vs a Python loop over critics")
  print(f"{'N':>4} {'vectorized ms':>14} {'loop ms':>9} {'loop / vectorized':>18}")
  batch = _batch(256)
  target = jnp.zeros(256)
  for n in sizes:
    vec, loop, params, tx = critic_steps(n)
    holders = {"vec": [jax.tree.map(jnp.copy, params), tx.init(params)],
               "loop": [jax.tree.map(jnp.copy, params), tx.init(params)]}

    def run(name, fn):
      def call():
        p, o, loss = fn(*holders[name], batch, target)
        holders[name][:] = [p, o]
        return loss
      return call

    fns = [run("vec", vec), run("loop", loop)]
    for fn in fns:  # Compile.
      fn()
    v, lp = _median_ms(fns, repeats)
    print(f"{n:>4} {v:>14.2f} {lp:>9.2f} {lp / v:>18.2f}")


def batch_table(sizes, num_critics, repeats):
  print(f"\n(2) whole SAC-N update, N = {num_critics}, {LAYERS} x {HIDDEN} layers, by batch size")
  print(f"{'B':>6} {'ms/update':>10} {'updates/s':>10} {'samples/s':>11} {'cost / B=256':>13}")
  agent = Agent(OBS, ACT, 1.0, Hyperparameters(num_critics=num_critics, hidden=HIDDEN,
                                               num_layers=LAYERS),
                optax.adam(3e-4), optax.adam(3e-4), optax.adam(3e-4))
  update = jax.jit(agent.update, donate_argnums=0)
  rows = {}
  for b in sizes:
    holder = [agent.init(jax.random.key(0))]
    batch = _batch(b)

    def call(holder=holder, batch=batch):
      holder[0], metrics = update(holder[0], batch)
      return metrics["loss"]

    call()  # Compile.
    rows[b] = call
  times = dict(zip(sizes, _median_ms([rows[b] for b in sizes], repeats)))
  base = times[sizes[0]]
  for b in sizes:
    ms = times[b]
    print(f"{b:>6} {ms:>10.2f} {1000 / ms:>10.1f} {b * 1000 / ms:>11,.0f} {ms / base:>13.2f}")
  within = [b for b in sizes if times[b] <= 2 * base]
  print(f"\nlargest batch whose update costs <= 2x the B={sizes[0]} update: {max(within)} "
        f"({times[max(within)] / base:.2f}x); samples/s there {max(within) / sizes[0] * base / times[max(within)]:.1f}x B={sizes[0]}'s")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
  args = parser.parse_args()
  print(f"{jax.device_count()} {jax.devices()[0].platform} device(s); float32")
  if args.quick:
    ensemble_table([2, 4], repeats=3)
    batch_table([256, 512], num_critics=2, repeats=3)
  else:
    ensemble_table([2, 5, 10, 20, 50], repeats=15)
    batch_table([256, 1024, 2048, 4096, 8192, 16384], num_critics=10, repeats=9)


if __name__ == "__main__":
  main()
