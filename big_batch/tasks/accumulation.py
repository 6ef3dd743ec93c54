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

from big_batch.parallel.mesh import BATCH_AXES


def batch_shards() -> int:
  """D: the devices the batch is split over, in the mesh set by `jax.set_mesh` (1 if none)."""
  mesh = jax.sharding.get_abstract_mesh()
  return math.prod(mesh.shape.get(axis, 1) for axis in BATCH_AXES)


def micro_batch(batch, index, steps: int, shards: int):
  """Micro-batch `index` of `steps`: the index-th of the `steps` sub-blocks of each of the
  `shards` contiguous blocks of every leaf's leading axis, concatenated in block order."""

  def take(x):
    per_block = x.reshape(shards, steps, x.shape[0] // (shards * steps), *x.shape[1:])
    rows = jax.lax.dynamic_index_in_dim(per_block, index, axis=1, keepdims=False)
    return rows.reshape(-1, *x.shape[1:])

  return jax.tree.map(take, batch)


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
