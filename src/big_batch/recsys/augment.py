"""MCLRec's stochastic sequence augmentations, as its data loader does them, in JAX.

QinHsiu/MCLRec `recbole/data/dataloader/sequential_dataloader.py::mclrec_aug`, for a
left-aligned sequence s (0-padded) of length n:

  crop     keep the window of m = floor((1 - crop_ratio) n) items starting at a uniform
           c in [0, n - m], moved to the front; the new length is m;
  mask     set floor(mask_ratio n) distinct positions among the first n to 0 (the padding id:
           the code has no [MASK] token); the length stays n;
  reorder  shuffle the window of r = floor(reorder_ratio n) items starting at a uniform
           c in [0, n - r]; the length stays n.

Each sequence gets two distinct operations (`random.sample(range(3), k=2)`: an ordered pair,
uniform over the 6), one per view; a sequence of length 1 is left as it is in both views.
The ratios are 0.5, 0.5, 0.8 in the code's MCLRec.yaml. Everything is a pure function of a
key, vmapped over the batch, so views are reproducible from the task's state.
"""
import jax
import jax.numpy as jnp
import numpy as np

CROP, MASK, REORDER = 0, 1, 2
# The ordered pairs of distinct operations random.sample(range(3), k=2) draws from.
# numpy, not jnp: a module-level jnp array would start the XLA backend at import, before
# jax.distributed.initialize can run.
_PAIRS = np.array([(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)], np.int32)


def _floor_times(length, ratio):
  return jnp.floor(length.astype(jnp.float32) * ratio + 1e-6).astype(jnp.int32)


def crop(key, seq, length, crop_ratio=0.5):
  """The window of floor((1 - crop_ratio) n) items at a uniform start, moved to the front."""
  keep = _floor_times(length, 1.0 - crop_ratio)
  start = jax.random.randint(key, (), 0, length - keep + 1)
  positions = jnp.arange(seq.shape[0])
  shifted = seq[jnp.clip(start + positions, 0, seq.shape[0] - 1)]
  return jnp.where(positions < keep, shifted, 0), keep


def mask(key, seq, length, mask_ratio=0.5):
  """floor(mask_ratio n) distinct positions of the first n set to the padding id 0."""
  count = _floor_times(length, mask_ratio)
  positions = jnp.arange(seq.shape[0])
  draw = jnp.where(positions < length, jax.random.uniform(key, seq.shape), 2.0)
  ranks = jnp.argsort(jnp.argsort(draw))
  return jnp.where(ranks < count, 0, seq), length


def reorder(key, seq, length, reorder_ratio=0.8):
  """The window of floor(reorder_ratio n) items at a uniform start, randomly permuted."""
  size = _floor_times(length, reorder_ratio)
  start_key, perm_key = jax.random.split(key)
  start = jax.random.randint(start_key, (), 0, length - size + 1)
  positions = jnp.arange(seq.shape[0])
  inside = (positions >= start) & (positions < start + size)
  # Sorting by these keys permutes the window among itself and keeps every other position.
  sort_keys = jnp.where(inside, start + jax.random.uniform(perm_key, seq.shape) * 0.999 * size,
                        positions.astype(jnp.float32))
  return seq[jnp.argsort(sort_keys)], length


def _apply(op, key, seq, length, ratios):
  out = [f(key, seq, length, r) for f, r in zip((crop, mask, reorder), ratios)]
  return (jnp.stack([o[0] for o in out])[op], jnp.stack([o[1] for o in out])[op])


def two_views(key, items, lengths, crop_ratio=0.5, mask_ratio=0.5, reorder_ratio=0.8):
  """(view1, length1, view2, length2, ops) for sequences [B, N]: ops [B, 2] are the two
  operations (CROP, MASK, REORDER) each sequence got, -1 where it was left as it is."""
  ratios = (crop_ratio, mask_ratio, reorder_ratio)

  def one(key, seq, length):
    pair_key, key1, key2 = jax.random.split(key, 3)
    ops = jnp.asarray(_PAIRS)[jax.random.randint(pair_key, (), 0, len(_PAIRS))]
    view1, len1 = _apply(ops[0], key1, seq, length, ratios)
    view2, len2 = _apply(ops[1], key2, seq, length, ratios)
    short = length <= 1
    return (jnp.where(short, seq, view1), jnp.where(short, length, len1),
            jnp.where(short, seq, view2), jnp.where(short, length, len2),
            jnp.where(short, -1, ops))

  keys = jax.random.split(key, items.shape[0])
  return jax.vmap(one)(keys, items, lengths)
