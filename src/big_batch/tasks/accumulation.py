"""Gradient accumulation: one optimizer update per global batch, computed in k micro-batches.

A global batch of B rows is split into k micro-batches of B/k rows; a `jax.lax.scan` runs the
forward and backward pass on one micro-batch at a time, so the activations held at once are
those of one micro-batch, and returns

    g = (1/k) sum_j grad L_j,   L_j = mean loss over micro-batch j,

which, for micro-batches of equal size, is the gradient of the mean loss over the whole batch
(exactly so for models whose output on a row does not depend on the other rows of its batch).
Mutable model state (batch-norm running statistics) is carried through the scan, so it is
updated once per micro-batch, in micro-batch order.

Which rows form micro-batch j: the trainer shards the batch in D contiguous blocks over the
batch axes ('data', 'fsdp'), device d holding rows [d B/D, (d+1) B/D). Viewing the batch as
[D, k, B/(Dk), ...], micro-batch j is [:, j]: the j-th sub-block of every device's block. Each
device thus keeps its own rows (no example crosses devices) and every micro-batch is spread
over all devices. Within a micro-batch the rows stay in their original order, so a ghost batch
of g rows (Ghost BN) is g contiguous original rows whenever g divides B/(Dk).

Communication is left to the partitioner (the mesh axes are Auto). On XLA:CPU it all-reduces
each micro-batch's gradient inside the loop, k all-reduces per update rather than one of the
accumulated sum; deferring it would take a `shard_map` over the batch axes, which plain
batch norm (statistics over the whole micro-batch) does not allow.
"""
import math

import jax
import jax.numpy as jnp

from big_batch.checks import ConfigError
from big_batch.parallel.mesh import BATCH_AXES


def batch_shards(axes=BATCH_AXES) -> int:
  """D: the devices the batch is split over, in the mesh set by `jax.set_mesh` (1 if none)."""
  mesh = jax.sharding.get_abstract_mesh()
  return math.prod(mesh.shape.get(axis, 1) for axis in axes)


def steps_for(rows: int, shards: int | None = None, accumulation_steps: int = 1,
              max_micro_batch: int | None = None) -> int:
  """k, the micro-batches a batch of `rows` rows is computed in: `accumulation_steps`, or more
  so that no device's micro-batch exceeds `max_micro_batch` rows (per device).

  The trainer rounds batch sizes so that this k divides every device's rows
  (train/batch_plan.py); a batch where it does not is an error naming the numbers.
  """
  shards = batch_shards() if shards is None else shards
  per_device = rows // shards
  steps = accumulation_steps
  if max_micro_batch is not None:
    steps = max(steps, -(-per_device // max_micro_batch))
  if steps > 1 and (rows % shards or per_device % steps):
    raise ValueError(f"a batch of {rows} rows does not split into {steps} micro-batches on "
                     f"each of {shards} devices")
  return steps


def micro_batch(batch, index, steps: int, shards: int):
  """Micro-batch `index` of `steps`: the index-th of the `steps` sub-blocks of each of the
  `shards` contiguous blocks of every leaf's leading axis, concatenated in block order."""

  def take(x):
    per_block = x.reshape(shards, steps, x.shape[0] // (shards * steps), *x.shape[1:])
    rows = jax.lax.dynamic_index_in_dim(per_block, index, axis=1, keepdims=False)
    return rows.reshape(-1, *x.shape[1:])

  return jax.tree.map(take, batch)


def join_micro_batches(stacked, steps: int, shards: int):
  """The inverse of `micro_batch`: leaves stacked over the `steps` micro-batches (leading
  axis k, then the micro-batch's rows) back in the rows' original order."""

  def join(x):
    per_block = x.reshape(steps, shards, x.shape[1] // shards, *x.shape[2:])
    return jnp.swapaxes(per_block, 0, 1).reshape(-1, *x.shape[2:])

  return jax.tree.map(join, stacked)


def accumulate_gradients(loss_and_aux_fn, params, model_state, batch, steps: int,
                         shards: int | None = None):
  """The mean loss, aux and gradient of `batch`, computed in `steps` micro-batches.

  `loss_and_aux_fn(params, model_state, micro_batch) -> (loss, (model_state, aux))`, with
  `loss` the mean over the micro-batch and `aux` a pytree of per-micro-batch means (metrics).
  Returns `(loss, (model_state, aux), grads)` where loss, aux and grads are the means over
  the micro-batches and model_state has been threaded through them in order. `shards` is D
  (default: the batch axes of the current mesh); see the module docstring for the split.
  """
  grad_fn = jax.value_and_grad(loss_and_aux_fn, has_aux=True)
  if steps == 1:
    (loss, (model_state, aux)), grads = grad_fn(params, model_state, batch)
    return loss, (model_state, aux), grads
  shards = batch_shards() if shards is None else shards
  rows = jax.tree.leaves(batch)[0].shape[0]
  if rows % (shards * steps):
    raise ValueError(f"a batch of {rows} rows does not split into {steps} micro-batches on "
                     f"each of {shards} devices")

  def body(carry, index):
    grad_sum, model_state = carry
    (loss, (model_state, aux)), grads = grad_fn(
        params, model_state, micro_batch(batch, index, steps, shards))
    grad_sum = jax.tree.map(lambda total, g: total + g.astype(total.dtype), grad_sum, grads)
    return (grad_sum, model_state), (loss, aux)

  # The sum is kept in at least float32: k bf16 additions would round away small gradients.
  zeros = jax.tree.map(
      lambda p: jnp.zeros(p.shape, jnp.promote_types(p.dtype, jnp.float32)), params)
  (grad_sum, model_state), (losses, aux) = jax.lax.scan(
      body, (zeros, model_state), jnp.arange(steps))
  grads = jax.tree.map(lambda g, p: (g / steps).astype(p.dtype), grad_sum, params)
  return losses.mean(), (model_state, jax.tree.map(lambda a: a.mean(0), aux)), grads


def check(batch, sizes, shards: int, ghost_batch_size: int | None = None) -> None:
  """Validates `accumulation_steps` and `max_micro_batch` of a `batch` section (a
  `checks.Section`) for every global batch size in `sizes` (`batch.size`, scheduled sizes).

  Each size must split over the `shards` devices and then into its k micro-batches
  (`steps_for`). A ghost batch (Ghost BN) must divide the batch when k = 1, and each device's
  micro-batch when k > 1 (there a ghost batch must not straddle two micro-batches).
  """
  steps = batch.positive("accumulation_steps", default=1, integer=True)
  cap = batch.read("max_micro_batch", default=None)
  if cap is not None:
    batch.positive("max_micro_batch", integer=True)
  for size in sizes:
    where = (f"{batch.name('size')}={size}" if size == batch.node.get("size")
             else f"the size {size} of {batch.name('schedule')}")
    if size % shards:
      raise ConfigError(f"{where} is not divisible by the {shards} devices of the batch axes "
                        f"('data', 'fsdp'): use a multiple of {shards}")
    per_device = size // shards
    k = steps if cap is None else max(steps, -(-per_device // cap))
    if per_device % k:
      raise ConfigError(f"{where} is not divisible by the {shards} devices of the batch axes "
                        f"('data', 'fsdp') times {k} micro-batches ({batch.name('accumulation_steps')}"
                        f"={steps}, max_micro_batch={cap}): use a multiple of {shards * k}")
    if ghost_batch_size is not None:
      unit, what = ((size, "the global batch") if k == 1 else
                    (per_device // k, f"each device's micro-batch ({size} / ({shards} devices "
                                      f"x {k} micro-batches))"))
      if unit % ghost_batch_size:
        raise ConfigError(f"config.model.ghost_batch_size={ghost_batch_size} does not divide "
                          f"{what} = {unit} rows, for {where}: use a divisor of {unit}")
