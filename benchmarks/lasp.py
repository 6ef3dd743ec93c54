"""LASP on 8 simulated CPU devices: longest sequence within a memory budget, bytes, step time.

  python benchmarks/lasp.py

The workload is one decayed linear-attention layer's training step: forward and backward
of sum(O ⊙ W) w.r.t. q, k, v, with B=1, h=4 heads of d_h=32 (d=128), ALiBi decays
λ_h = exp(−2^{−2(h+1)}), float32, chunks of 64. Compared:

  (a) one device, chunked (`lasp.blockwise`);
  (b) LASP-2 over 8 `seq` shards (and LASP-1 for the step-time ratio);
  (c) 8 `seq` shards that all-gather K and V, the all-gather/ring softmax-attention
      pattern: each shard gathers the full K, V and computes its causal rows (here from
      the gathered prefix, kv = Σ_{j<start} λ^{start−j} k_jᵀ v_j, so (c) differs from (b)
      only in what it communicates and holds, not in arithmetic).

Printed: (1) the longest length, doubling from 1024, whose compiled per-device memory
(`compiled.memory_analysis()`: temp + argument + output bytes) fits the budget; (2) the
bytes the busiest device receives per layer, from the HLO collectives, next to the closed
forms: one state of B·d²/h per direction (LASP-1: a hop reaches one shard), (W−1) states
per collective (LASP-2) and 2·B·N·d·(W−1)/W per K/V gather; (3) the median step time
of lasp2 over lasp1 and over (c) at one length, measured interleaved in this process.
The 8 devices share this machine's cores, so times reflect compute and in-process copies,
not a network.
"""
import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()

import collections  # noqa: E402  (jax must see XLA_FLAGS first)
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from big_batch.parallel import lasp  # noqa: E402

BATCH, HEADS, HEAD_DIM, CHUNK = 1, 4, 32, 64
DECAY = np.exp(-2.0 ** -(2 * np.arange(1, HEADS + 1)))
BUDGET = 64 * 2**20
SHARDS = 8
SPEC = jax.P(None, None, 'seq', None)


def gather_kv(q, k, v, decay, *, mesh, chunk_size):
  """(c): all-gather K and V over `seq`, then each shard's causal rows."""
  def shard(q, k, v, decay):
    k_all = jax.lax.all_gather(k, 'seq', axis=2, tiled=True)
    v_all = jax.lax.all_gather(v, 'seq', axis=2, tiled=True)
    log_decay = jnp.log(decay)[:, None]
    local = q.shape[2]
    gaps = jax.lax.axis_index('seq') * local - jnp.arange(k_all.shape[2])
    weights = jnp.where(gaps > 0, jnp.exp(log_decay * jnp.maximum(gaps, 0)), 0.)
    kv_prev = jnp.einsum('bhjd,bhje->bhde', k_all * weights[..., None], v_all)
    q_decay = jnp.exp(log_decay * jnp.arange(local))[..., None]
    return (lasp.blockwise(q, k, v, decay, chunk_size=chunk_size)
            + jnp.einsum('bhid,bhde->bhie', q * q_decay, kv_prev))
  # Explicit mesh axes: shard_map wants its inputs already laid out as in_specs.
  q, k, v = (jax.reshard(x, jax.sharding.NamedSharding(mesh, SPEC)) for x in (q, k, v))
  decay = jax.reshard(decay, jax.sharding.NamedSharding(mesh, jax.P()))
  return jax.shard_map(shard, mesh=mesh, in_specs=(SPEC,) * 3 + (jax.P(),),
                       out_specs=SPEC)(q, k, v, decay)


def attention_fns(mesh):
  return {
      'single': lambda q, k, v, d: lasp.blockwise(q, k, v, d, chunk_size=CHUNK),
      'lasp2': lambda q, k, v, d: lasp.lasp2(q, k, v, d, mesh=mesh, chunk_size=CHUNK),
      'lasp1': lambda q, k, v, d: lasp.lasp1(q, k, v, d, mesh=mesh, chunk_size=CHUNK),
      'gather_kv': lambda q, k, v, d: gather_kv(q, k, v, d, mesh=mesh, chunk_size=CHUNK),
  }


def train_step(attention):
  """d sum(O ⊙ W) / d(q, k, v): one attention layer's forward and backward."""
  def loss(q, k, v, w, decay):
    return jnp.sum(attention(q, k, v, decay) * w)
  return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def compiled_step(name, attention, mesh, n):
  sharded = name != 'single'
  def spec(shape, partition):
    sharding = jax.sharding.NamedSharding(mesh, partition) if sharded else None
    return jax.ShapeDtypeStruct(shape, jnp.float32, sharding=sharding)
  x = spec((BATCH, HEADS, n, HEAD_DIM), SPEC)
  return train_step(attention).lower(x, x, x, x, spec((HEADS,), jax.P())).compile()


def per_device_bytes(compiled):
  memory = compiled.memory_analysis()
  return (memory.temp_size_in_bytes + memory.argument_size_in_bytes
          + memory.output_size_in_bytes)


def longest_fitting(name, attention, mesh, max_n=2**19):
  n, fits, used = 1024, 0, 0
  while n <= max_n:
    memory = per_device_bytes(compiled_step(name, attention, mesh, n))
    if memory > BUDGET:
      break
    fits, used, n = n, memory, 2 * n
  return fits, used


def received_bytes(collectives):
  """Bytes the busiest device receives: (g−1) operands for an all-gather, (g−1)/g of the
  operand for a ring reduce-scatter or all-reduce phase, the operand for each permute pair
  that targets it."""
  group_total, permuted = 0., collections.Counter()
  for c in collectives:
    g = c.group_size
    if c.op == 'collective-permute':
      permuted.update({target: c.operand_bytes for _, target in c.pairs})
      continue
    group_total += {'all-gather': (g - 1) * c.operand_bytes,
                    'reduce-scatter': (g - 1) / g * c.operand_bytes,
                    'all-reduce': 2 * (g - 1) / g * c.operand_bytes}.get(c.op, c.operand_bytes)
  return group_total + max(permuted.values(), default=0)


def closed_form_bytes(name, n):
  state = BATCH * (HEADS * HEAD_DIM) ** 2 / HEADS * 4  # B·d²/h floats
  kv_gather = 2 * BATCH * n * HEADS * HEAD_DIM * (SHARDS - 1) / SHARDS * 4  # ≈ 2·B·N·d
  # Forward and backward: a LASP-1 shard receives KV_{t−1} from t−1 and dKV_{t+1} from t+1
  # (each hop reaches one shard), the all-gather and its reduce-scatter move (W−1) states
  # each for LASP-2, and (c) gathers K, V forward and reduce-scatters dK, dV backward.
  return {'lasp1': 2 * state, 'lasp2': 2 * (SHARDS - 1) * state,
          'gather_kv': 2 * kv_gather}[name]


def check_against_dense(fns, mesh):
  keys = jax.random.split(jax.random.key(0), 3)
  q, k, v = (jax.random.normal(key, (BATCH, HEADS, 1024, HEAD_DIM)) / 6 for key in keys)
  want = lasp.dense(q, k, v, DECAY)
  with jax.set_mesh(mesh):
    return {name: float(jnp.max(jnp.abs(jax.jit(fns[name])(q, k, v, DECAY) - want)))
            for name in ('lasp2', 'lasp1', 'gather_kv')}


def time_steps(fns, mesh, n, repeats=7):
  keys = jax.random.split(jax.random.key(1), 4)
  sharding = jax.sharding.NamedSharding(mesh, SPEC)
  q, k, v, w = (jax.device_put(jax.random.normal(key, (BATCH, HEADS, n, HEAD_DIM)) / 6,
                               sharding) for key in keys)
  decay = jax.device_put(jnp.asarray(DECAY, jnp.float32), jax.sharding.NamedSharding(mesh, jax.P()))
  steps = {name: train_step(fns[name]) for name in ('lasp2', 'lasp1', 'gather_kv')}
  times = collections.defaultdict(list)
  for name, step in steps.items():
    jax.block_until_ready(step(q, k, v, w, decay))
  for _ in range(repeats):  # interleaved, so load from other processes hits all alike
    for name, step in steps.items():
      start = time.perf_counter()
      jax.block_until_ready(step(q, k, v, w, decay))
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def main():
  mesh = jax.make_mesh((1, SHARDS), ('data', 'seq'))
  fns = attention_fns(mesh)
  print(f'{SHARDS} simulated devices on {os.cpu_count()} cores; B={BATCH}, h={HEADS}, '
        f'd_h={HEAD_DIM}, chunk={CHUNK}, float32')
  print('max |O − dense| at N=1024:',
        ', '.join(f'{k} {v:.1e}' for k, v in check_against_dense(fns, mesh).items()))

  print(f'\n1) Longest training-step length within {BUDGET / 2**20:.0f} MiB per device '
        '(temp + argument + output, compiled.memory_analysis())')
  print(f"{'config':<34}{'longest N':>10}{'MiB/device':>12}")
  labels = {'single': '(a) single device, blockwise', 'lasp2': '(b) lasp2, 8 seq shards',
            'gather_kv': '(c) all-gather K/V, 8 seq shards'}
  for name, label in labels.items():
    fits, used = longest_fitting(name, fns[name], mesh)
    print(f'{label:<34}{fits:>10}{used / 2**20:>12.1f}')

  print('\n2) Bytes received per device per layer (forward + backward), from the HLO')
  print('   closed form: LASP-1 2·B·d²/h·4 bytes; LASP-2 2(W−1)·B·d²/h·4 bytes; '
        '(c) 2·(2·B·N·d·(W−1)/W)·4 bytes, W=8, d=128')
  print(f"{'config':<12}{'N':>8}  {'collectives':<44}{'HLO bytes':>12}{'closed form':>13}")
  for name in ('lasp1', 'lasp2', 'gather_kv'):
    for n in (8192, 16384):
      collectives = lasp.hlo_collectives(compiled_step(name, fns[name], mesh, n).as_text())
      counts = collections.Counter(c.op for c in collectives)
      ops = ', '.join(f'{count}× {op}' for op, count in sorted(counts.items()))
      print(f'{name:<12}{n:>8}  {ops:<44}{received_bytes(collectives):>12.0f}'
            f'{closed_form_bytes(name, n):>13.0f}')

  n = 16384
  times = time_steps(fns, mesh, n)
  print(f'\n3) Median step time at N={n} (7 interleaved runs): '
        + ', '.join(f'{k} {1e3 * v:.1f} ms' for k, v in times.items()))
  print(f"   lasp2/lasp1 = {times['lasp2'] / times['lasp1']:.2f}, "
        f"lasp2/(c) all-gather K/V = {times['lasp2'] / times['gather_kv']:.2f}")


if __name__ == '__main__':
  main()
