"""Uneven data parallelism in one SPMD program: per-device batches and accumulation counts.

Cephalo (Guo, Anand, Chen & Daudjee, ICS 2025, Sec. 3) gives device i of a mixed cluster its
own share b_i of the global batch B (sum_i b_i = B), in proportion to its speed, and splits
it into micro-batches that fit its memory, g_i of them. The update stays that of homogeneous
large-batch SGD: the gradient is the sample-weighted combination

    g = sum_i (b_i / B) g_i_local = (1 / B) sum_i sum_{r in device i} grad l_r,      (1)

the gradient of the mean loss over the B examples, whatever the split.

JAX runs one program on every device with arrays split into equal shards, so the uneven
split is expressed in the data and the trip count, not in the shapes:

  - every device holds a block of `slots` x `micro_batch` rows (slots = max_i g_i); device i's
    block starts with its b_i real rows, the rest are padding with weight 0 (`arrange`);
  - inside `jax.shard_map`, device i loops over its own g_i = ceil(b_i / micro_batch)
    micro-batches (`lax.fori_loop` with a trip count read from a per-device table by
    `lax.axis_index`: a while loop, so a device with fewer micro-batches really does less
    work), accumulating sum_r w_r grad l_r over its rows; one `psum` then gives (1).

What is and is not uneven: the rows trained on and the compute (trip counts) are per device;
the micro-batch shape is common (one program), and so is every array's shard: the padded batch
block, and the parameters and optimizer state (replicated here, or split evenly by a
NamedSharding; a NamedSharding cannot give devices shards of different sizes). A planner's
uneven state shares (parallel/planner.py) are a memory model for systems that can place them.

Emulated heterogeneity (`slowdown`): device i computes each micro-batch's gradient
`slowdown[i]` times, of which the last is kept. The repeats are made distinct to the compiler
(inputs scaled by (j + 1) / (j + 1), exactly 1 in floating point) so none is hoisted or
merged, and the result is bitwise that of slowdown 1.
"""
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P


class Layout(NamedTuple):
  """The per-device split of a global batch: rows[i] real rows on device i, in micro-batches
  of `micro_batch` rows, `slots` micro-batches of room per device."""
  rows: tuple[int, ...]
  micro_batch: int

  @property
  def counts(self) -> tuple[int, ...]:
    """g_i = ceil(b_i / micro_batch): the micro-batches device i computes."""
    return tuple(-(-b // self.micro_batch) for b in self.rows)

  @property
  def slots(self) -> int:
    return max(self.counts)

  @property
  def global_batch(self) -> int:
    return sum(self.rows)

  @property
  def padded_size(self) -> int:
    """Rows of the padded global array: devices x slots x micro_batch."""
    return len(self.rows) * self.slots * self.micro_batch


def layout(rows: Sequence[int], micro_batch: int) -> Layout:
  """A checked Layout: every device has at least one row, micro_batch is positive."""
  rows = tuple(int(b) for b in rows)
  if not rows or any(b < 1 for b in rows):
    raise ValueError(f"rows={rows} must give every device at least one row")
  if micro_batch < 1:
    raise ValueError(f"micro_batch={micro_batch} must be positive")
  return Layout(rows, int(micro_batch))


def arrange(candidates: np.ndarray, plan: Layout) -> dict:
  """The padded device-block layout of B = len(candidates) example indices: device i's block
  holds candidates[sum_{k<i} b_k : sum_{k<=i} b_k] with weight 1, then padding rows (the
  block's first index again) with weight 0. Returns {'index': [P], 'weight': [P]}."""
  candidates = np.asarray(candidates)
  if len(candidates) != plan.global_batch:
    raise ValueError(f"{len(candidates)} candidates for a layout of {plan.global_batch} rows")
  block = plan.slots * plan.micro_batch
  index = np.empty((len(plan.rows), block), candidates.dtype)
  weight = np.zeros((len(plan.rows), block), np.float32)
  start = 0
  for i, b in enumerate(plan.rows):
    index[i, :b] = candidates[start:start + b]
    index[i, b:] = candidates[start]
    weight[i, :b] = 1.0
    start += b
  return {"index": index.reshape(-1), "weight": weight.reshape(-1)}


def accumulated_sums(sum_fn: Callable, params, batch: dict, plan: Layout, mesh: Mesh,
                     axes: tuple[str, ...], slowdown: Sequence[int] | None = None):
  """psum over devices of each device's sum over its own micro-batches of
  `jax.value_and_grad(sum_fn, has_aux=True)(params, micro_batch)`, Eq. (1) before dividing by B.

  `sum_fn(params, micro_batch) -> (weighted loss sum, aux sums)` must sum (not average) over
  the micro-batch's rows, weighting each by micro_batch['weight'] (0 for padding). `batch` is
  the padded global batch (`arrange`), split over `axes` of `mesh`; params are replicated.
  Returns ((loss_sum, aux_sums), grad_sums), replicated.
  """
  devices = int(np.prod([mesh.shape[a] for a in axes]))
  if devices != len(plan.rows):
    raise ValueError(f"a layout of {len(plan.rows)} devices on a mesh of {devices} over {axes}")
  slowdown = tuple(slowdown or (1,) * devices)
  counts = jnp.asarray(plan.counts, jnp.int32)
  repeats = jnp.asarray(slowdown, jnp.int32)
  grad_fn = jax.value_and_grad(sum_fn, has_aux=True)

  def local(params, batch):
    device = jax.lax.axis_index(axes)
    blocks = jax.tree.map(lambda x: x.reshape(plan.slots, plan.micro_batch, *x.shape[1:]),
                          batch)
    zero = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], blocks))
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero)

    def micro(j, total):
      chunk = jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, j, keepdims=False), blocks)

      def repeat(k, _):
        one = (k + 1).astype(jnp.float32) / (k + 1).astype(jnp.float32)  # Exactly 1.
        scaled = dict(chunk, input=chunk["input"] * one.astype(chunk["input"].dtype))
        return grad_fn(params, scaled)

      out = jax.lax.fori_loop(0, repeats[device], repeat, zero)
      return jax.tree.map(jnp.add, total, out)

    total = jax.lax.fori_loop(0, counts[device], micro, zero)
    return jax.lax.psum(total, axes)

  batch_spec = jax.tree.map(lambda _: P(axes), batch)
  params_spec = jax.tree.map(lambda _: P(), params)
  return jax.shard_map(local, mesh=mesh, in_specs=(params_spec, batch_spec), out_specs=P(),
                       check_vma=False)(params, batch)
