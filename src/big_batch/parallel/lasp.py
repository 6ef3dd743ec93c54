"""Sequence-parallel causal linear attention with decay: LASP-1 and LASP-2.

Per head h, with a decay λ_h in (0, 1] (λ = 1: no decay),

  o_i = Σ_{j≤i} λ^{i−j} (q_i·k_j) v_j.

Inputs are [batch, heads, seq, head_dim]. The sequence is cut into W shards over the
mesh axis `seq` (the batch goes over `data` and `fsdp`, those of them the mesh has, as the
trainer shards it), and each shard into chunks of C positions. Within a shard of L = N/W
positions everything is local; across shards only the d×d state

  KV_t = Σ_{j in shards ≤ t} λ^{(end of shard t) − j} k_jᵀ v_j

travels, so the communication per layer is B·h·d_h² elements whatever N is:

- `lasp1` passes KV down the chain of shards with `ppermute`, W−1 serial hops of one
  state each, from shard t to t+1 at hop t (Sun et al. 2024, "Linear Attention Sequence
  Parallelism", arXiv:2404.02882);
- `lasp2` all-gathers the per-shard states once and forms a decayed prefix sum locally
  (Sun et al. 2025, "LASP-2", arXiv:2502.07563);
- `blockwise` is the same chunked algorithm on one device, O(N·d + d²) memory per head;
- `dense` materializes the N×N decayed causal mask: the reference for tests.

The decay powers λ^e = exp(e·log λ), the states and what they scale are float32 (float64
for float64 inputs) whatever the input dtype, as LASP's kernels keep KV in float32: in
bfloat16, λ = 0.999 would round to 1, and λ^C to a power that drifts over N/C chunks. The
output has the input's dtype.
"""
import functools
import math
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from big_batch.parallel.mesh import BATCH_AXES

SEQ_AXIS = 'seq'
DEFAULT_CHUNK_SIZE = 64


def dense(q, k, v, decay):
  """Dense reference: O = [(Q Kᵀ) ⊙ D] V with D_ij = λ^{i−j} for i ≥ j and 0 above.

  Materializes the N×N matrix; for tests and short sequences only.
  """
  log_decay = _log_decay(decay, q.shape[1], q.dtype)
  scores = jnp.einsum('bhid,bhjd->bhij', q, k) * _decay_mask(log_decay, q.shape[2])
  return jnp.einsum('bhij,bhje->bhie', scores, v).astype(q.dtype)


def blockwise(q, k, v, decay, *, chunk_size=None):
  """Single-device chunked linear attention (Qin et al. 2024, "Lightning Attention-2").

  For chunk c of C positions, O_c = [(Q_c K_cᵀ) ⊙ M] V_c + (Λ Q_c) KV_{c−1} and
  KV_c = λ^C KV_{c−1} + (Λ̃ K_c)ᵀ V_c, with M_ij = λ^{i−j} (i ≥ j), Λ = diag(λ^i),
  Λ̃ = diag(λ^{C−i}). Memory is O(N·C + (N/C)·d²) per head: never N×N.
  `chunk_size=None` takes min(64, N).
  """
  n = q.shape[2]
  chunk = _chunk_size(n, 1, chunk_size)
  log_decay = _log_decay(decay, q.shape[1], q.dtype)
  return _local_attention(q, k, v, log_decay, chunk)[0].astype(q.dtype)


def lasp1(q, k, v, decay, *, mesh=None, chunk_size=None):
  """LASP-1: the KV state passed rank to rank over `seq` with ppermute (Sun et al. 2024).

  Shard t computes its local output with a zero incoming state, then receives
  KV_{t−1} from t−1 and adds (Λ Q_t) KV_{t−1}, Λ = diag(λ^p) over its L positions p;
  it sends KV_t = λ^L KV_{t−1} + KV_t^local to t+1. Hop t is the one pair t → t+1, so
  each shard sends and receives one state of B·h·d_h² elements per direction, as in the
  paper; the W−1 hops are serial, and autodiff runs them backwards, t+1 → t. `mesh=None`
  takes the mesh set by `jax.set_mesh`; `chunk_size=None` takes min(64, N/W).
  """
  return _sequence_parallel(_lasp1_shard, q, k, v, decay, mesh, chunk_size)


def lasp2(q, k, v, decay, *, mesh=None, chunk_size=None):
  """LASP-2: one all-gather of the per-shard states, then a decayed prefix sum (Sun et al. 2025).

  KV_{t−1} = Σ_{s<t} λ^{L(t−1−s)} KV_s^local, O_t = O_t^local + (Λ Q_t) KV_{t−1}.
  Autodiff turns the all-gather into one reduce-scatter in the backward pass, so each
  layer costs two collectives of B·h·d_h² elements per shard regardless of N.
  `mesh=None` takes the mesh set by `jax.set_mesh`; `chunk_size=None` takes min(64, N/W).
  """
  return _sequence_parallel(_lasp2_shard, q, k, v, decay, mesh, chunk_size)


def linear_attention(q, k, v, decay, *, mesh=None, impl='lasp2', chunk_size=None):
  """o_i = Σ_{j≤i} λ^{i−j} (q_i·k_j) v_j, computed by `impl`.

  impl: 'lasp2', 'lasp1', 'blockwise' or 'dense'.

  q, k: [batch, heads, seq, d_k]; v: [batch, heads, seq, d_v]; decay: [heads] in (0, 1].
  The sequence-parallel impls shard over mesh axis `seq` of `mesh`, or of the mesh set
  by `jax.set_mesh` when `mesh` is None.
  """
  if impl == 'dense':
    return dense(q, k, v, decay)
  if impl == 'blockwise':
    return blockwise(q, k, v, decay, chunk_size=chunk_size)
  if impl == 'lasp1':
    return lasp1(q, k, v, decay, mesh=mesh, chunk_size=chunk_size)
  if impl == 'lasp2':
    return lasp2(q, k, v, decay, mesh=mesh, chunk_size=chunk_size)
  raise ValueError(f"impl={impl!r} is not one of 'lasp2', 'lasp1', 'blockwise', 'dense'")


class Collective(NamedTuple):
  """One collective of a compiled HLO module."""
  op: str  # 'all-gather', 'reduce-scatter', 'all-reduce', 'collective-permute', 'all-to-all'
  shapes: tuple  # result shapes as (dtype, dims) pairs
  operand_bytes: int  # what one device contributes (for a collective-permute: each source)
  group_size: int  # devices per replica group (1 for collective-permute)
  pairs: tuple = ()  # a collective-permute's (source, target) device pairs


def hlo_collectives(hlo_text):
  """The synchronous collectives of a compiled HLO module (as XLA:CPU prints them).

  Used to check LASP's communication claims. The operand size follows from the result:
  an all-gather's operand is its result over the group size, a reduce-scatter's is its
  result times the group size, the others keep their size. A collective-permute's result
  has its operand's shape however many devices send, so who sends is in its `pairs`.
  """
  ops = 'all-gather|reduce-scatter|all-reduce|collective-permute|all-to-all'
  pattern = re.compile(rf'^\s*(?:ROOT )?\S+ = (.+?) ({ops})\((.*)$', re.M)
  collectives = []
  for result, op, rest in pattern.findall(hlo_text):
    shapes = _shapes(result)
    group = _group_size(rest)
    result_bytes = sum(_ITEMSIZE[dtype] * int(np.prod(dims)) for dtype, dims in shapes)
    scale = {'all-gather': 1 / group, 'reduce-scatter': group}.get(op, 1)
    collectives.append(Collective(op, tuple(shapes), int(result_bytes * scale), group,
                                  _pairs(rest)))
  return collectives


def _shapes(text):
  return [(dtype, tuple(int(s) for s in dims.split(',') if s))
          for dtype, dims in re.findall(r'\b([a-z]+\d*)\[([\d,]*)\]', text)]


def _pairs(attributes):
  listed = re.search(r'source_target_pairs=\{([\d,{}]*)\}', attributes)
  found = re.findall(r'\{(\d+),(\d+)\}', listed.group(1)) if listed else ()
  return tuple((int(source), int(target)) for source, target in found)


def _group_size(attributes):
  listed = re.search(r'replica_groups=\{\{([\d,]*)\}', attributes)
  if listed:
    return len(listed.group(1).split(','))
  iota = re.search(r'replica_groups=\[(\d+),(\d+)\]', attributes)
  return int(iota.group(2)) if iota else 1


_ITEMSIZE = {'pred': 1, 's8': 1, 'u8': 1, 'bf16': 2, 'f16': 2, 's16': 2, 'u16': 2,
             'f32': 4, 's32': 4, 'u32': 4, 'f64': 8, 's64': 8, 'u64': 8}


def shard_sequence(x, mesh=None):
  """Lays out x [batch, seq, ...] as LASP does: batch over `data` and `fsdp`, sequence
  over `seq`.

  Applied to a model's input tokens so that the token-wise layers (embedding, MLP, norms,
  logits) run on each device's N/W positions and their gradients stay sharded: only
  attention communicates, and nothing gathers the full sequence.
  """
  mesh = _seq_mesh(mesh)
  return _place(x, mesh, jax.P(_batch_axes(mesh), SEQ_AXIS))


def _sequence_parallel(shard_fn, q, k, v, decay, mesh, chunk_size):
  """Runs `shard_fn` as a shard_map with the sequence over `seq` and the batch over `data`
  and `fsdp`: a batch axis left out would all-gather q, k, v over it, and its devices
  would all compute the same outputs."""
  mesh = _seq_mesh(mesh)
  batch, heads, n, _ = q.shape
  shards = mesh.shape[SEQ_AXIS]
  chunk = _chunk_size(n, shards, chunk_size)
  batch_axes = _batch_axes(mesh)
  batch_shards = math.prod(mesh.shape[a] for a in batch_axes or ())
  if batch % batch_shards:
    raise ValueError(f"batch size {batch} is not divisible by the {batch_shards} shards of "
                     f"mesh axes {batch_axes}")
  spec = jax.P(batch_axes, None, SEQ_AXIS, None)
  log_decay = _log_decay(decay, heads, q.dtype)
  q, k, v = (_place(x, mesh, spec) for x in (q, k, v))
  fn = jax.shard_map(functools.partial(shard_fn, chunk=chunk, shards=shards), mesh=mesh,
                     in_specs=(spec, spec, spec, jax.P()), out_specs=spec)
  return fn(q, k, v, _place(log_decay, mesh, jax.P()))


def _lasp1_shard(q, k, v, log_decay, *, chunk, shards):
  o, kv = _local_attention(q, k, v, log_decay, chunk)
  rank = jax.lax.axis_index(SEQ_AXIS)
  shard_decay = jnp.exp(log_decay * q.shape[2])[:, None, None]
  kv_prev = jnp.zeros_like(kv)
  # Unrolled so the compiled program shows LASP-1's W−1 hops as W−1 collective-permutes.
  # At hop t only rank t holds its final state (it received KV_{t−1} at hop t−1), so only
  # it sends: any other rank would send a partial state that nobody keeps.
  for hop in range(shards - 1):
    received = jax.lax.ppermute(shard_decay * kv_prev + kv, SEQ_AXIS, [(hop, hop + 1)])
    kv_prev = jnp.where(rank == hop + 1, received, kv_prev)
  return (o + _incoming(q, kv_prev, log_decay)).astype(q.dtype)


def _lasp2_shard(q, k, v, log_decay, *, chunk, shards):
  o, kv = _local_attention(q, k, v, log_decay, chunk)
  all_kv = jax.lax.all_gather(kv, SEQ_AXIS)
  gaps = jax.lax.axis_index(SEQ_AXIS) - 1 - jnp.arange(shards)
  weights = jnp.where(gaps[:, None] >= 0,
                      jnp.exp(log_decay * q.shape[2] * jnp.maximum(gaps, 0)[:, None]), 0.)
  kv_prev = jnp.einsum('sh,sbhde->bhde', weights, all_kv)
  return (o + _incoming(q, kv_prev, log_decay)).astype(q.dtype)


def _local_attention(q, k, v, log_decay, chunk):
  """Chunked attention of one sequence from a zero state; returns (O, KV at the end)."""
  b, h, n, _ = q.shape
  split = lambda x: x.reshape(b, h, n // chunk, chunk, x.shape[-1])
  q, k, v = split(q), split(k), split(v)
  pos = jnp.arange(chunk)
  scores = jnp.einsum('bhcid,bhcjd->bhcij', q, k) * _decay_mask(log_decay, chunk)[:, None]
  o_intra = jnp.einsum('bhcij,bhcje->bhcie', scores, v)
  kv_chunks = jnp.einsum('bhcjd,bhcje->bhcde',
                         k * _powers(log_decay, chunk - pos)[:, None, :, None], v)
  kv_prev, kv_end = _decayed_prefix(kv_chunks, log_decay * chunk)
  o_inter = jnp.einsum('bhcid,bhcde->bhcie',
                       q * _powers(log_decay, pos)[:, None, :, None], kv_prev)
  return (o_intra + o_inter).reshape(b, h, n, -1), kv_end


def _decayed_prefix(states, log_step):
  """S_c = Σ_{s<c} a^{c−1−s} x_s over axis 2 with a = exp(log_step) per head; also S_n.

  A log-depth associative scan with (a₁, x₁)∘(a₂, x₂) = (a₁a₂, a₂x₁ + x₂).
  """
  steps = jnp.broadcast_to(jnp.exp(log_step)[None, :, None, None, None],
                           (1, states.shape[1], states.shape[2], 1, 1))
  combine = lambda x, y: (x[0] * y[0], y[0] * x[1] + y[1])
  inclusive = jax.lax.associative_scan(combine, (steps, states), axis=2)[1]
  exclusive = jnp.concatenate([jnp.zeros_like(inclusive[:, :, :1]), inclusive[:, :, :-1]], 2)
  return exclusive, inclusive[:, :, -1]


def _incoming(q, kv_prev, log_decay):
  """(Λ Q) KV_prev with Λ = diag(λ^p): the part of O due to earlier shards."""
  q_decay = _powers(log_decay, jnp.arange(q.shape[2]))[..., None]
  return jnp.einsum('bhid,bhde->bhie', q * q_decay, kv_prev)


def _powers(log_decay, exponents):
  """λ_h^e as exp(e·log λ_h), [heads, len(e)]: underflows to 0 instead of dividing by it."""
  return jnp.exp(log_decay[:, None] * exponents[None, :])


def _decay_mask(log_decay, n):
  """M_ij = λ^{i−j} for i ≥ j and 0 above the diagonal, [heads, n, n]."""
  gaps = jnp.arange(n)[:, None] - jnp.arange(n)[None, :]
  decays = jnp.exp(log_decay[:, None, None] * jnp.maximum(gaps, 0))
  return jnp.where(gaps >= 0, decays, 0.)


def _log_decay(decay, heads, dtype):
  """log λ per head in float32, or in `dtype` if wider, checking 0 < λ ≤ 1 whenever the
  decay is a concrete value."""
  if not isinstance(decay, jax.core.Tracer):
    values = np.asarray(decay, dtype=np.float64)
    if not np.all((values > 0) & (values <= 1)):
      raise ValueError(f'decay must lie in (0, 1] for every head; got {values}')
  dtype = jnp.promote_types(dtype, jnp.float32)
  return jnp.log(jnp.broadcast_to(jnp.asarray(decay, dtype), (heads,)))


def _chunk_size(n, shards, chunk_size):
  chunk = min(DEFAULT_CHUNK_SIZE, n // shards) if chunk_size is None else chunk_size
  if chunk < 1 or n % (shards * chunk):
    sharding = f"the {shards} shards of mesh axis '{SEQ_AXIS}' times " if shards > 1 else ''
    raise ValueError(f'sequence length {n} is not divisible by {sharding}chunk_size={chunk}')
  return chunk


def _seq_mesh(mesh):
  mesh = jax.sharding.get_abstract_mesh() if mesh is None else mesh
  if mesh.empty:
    raise ValueError(f"sequence-parallel attention needs a mesh with a '{SEQ_AXIS}' axis: "
                     "pass mesh= or set one with jax.set_mesh")
  if SEQ_AXIS not in mesh.axis_names:
    raise ValueError(f"sequence-parallel attention needs a mesh axis named '{SEQ_AXIS}'; "
                     f"the mesh has axes {mesh.axis_names}")
  return mesh


def _batch_axes(mesh):
  """('data', 'fsdp'), or those of them the mesh has; None if neither."""
  return tuple(a for a in BATCH_AXES if a in mesh.axis_names) or None


def _place(x, mesh, spec):
  """Lays `x` out as `spec`: reshard on Explicit mesh axes, constrain on Auto ones.

  shard_map raises on an input whose Explicit-axis sharding differs from its in_spec,
  and `jax.reshard` rejects Auto axes, hence the two paths. Outside jit, Auto axes are
  left to shard_map, which reshards its inputs itself (and a constraint on the abstract
  mesh of `jax.set_mesh` has no devices to place a concrete array on).
  """
  explicit = {a for a, t in zip(mesh.axis_names, mesh.axis_types)
              if t == jax.sharding.AxisType.Explicit}
  if explicit:
    target = jax.P(*(_explicit_only(entry, explicit) for entry in spec))
    return jax.reshard(x, jax.sharding.NamedSharding(mesh, target))
  if isinstance(x, jax.core.Tracer):
    return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, spec))
  return x


def _explicit_only(entry, explicit):
  """A PartitionSpec entry (an axis, a tuple of axes or None) without its non-Explicit axes."""
  if isinstance(entry, tuple):
    return tuple(a for a in entry if a in explicit) or None
  return entry if entry in explicit else None
