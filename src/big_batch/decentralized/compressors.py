"""Contractive compressors Q with E||Q(x) - x||^2 <= (1 - delta) ||x||^2, per tensor.

Yan et al. 2023 (ICML), Assumption 4 (alpha^2 = 1 - delta); the authors' code compresses
each parameter tensor on its own (grace_dl Top-k, QSGD). A compressor works on one flat
vector: `encode(x, key) -> payload` is what crosses the network (for top-k the k values and
their int32 indices, not a dense array with zeros), `decode(payload) -> x` runs at the
receiver, and `delta` is the contraction factor for a vector of that size.

  identity           payload x, delta 1.
  top_k(fraction)    the k = ceil(fraction d) largest |x_j|: delta = k / d (Stich et al. 2018).
  random_k(fraction) k coordinates uniformly without replacement: E delta = k / d.
  qsgd(levels)       Alistarh et al. 2017 stochastic quantization to s levels, sent as int8
                     signed levels and one float32 norm, scaled by 1 / (1 + omega) with
                     omega = min(d / s^2, sqrt(d) / s), which makes it contractive with
                     delta = 1 / (1 + omega) (Koloskova et al. 2019, Sec. 3).
"""
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class Compressor(NamedTuple):
  encode: Callable[[jax.Array, jax.Array], Any]
  decode: Callable[[Any], jax.Array]
  delta: float
  stochastic: bool


def kept(size: int, fraction: float) -> int:
  """k = ceil(fraction * size) (at least 1): the entries top-k and random-k send."""
  return max(1, min(size, math.ceil(fraction * size - 1e-9)))


def identity(size: int) -> Compressor:
  """Q(x) = x."""
  return Compressor(lambda x, key: x, lambda x: x, 1.0, False)


def _sparse_decode(size, dtype):
  return lambda p: jnp.zeros((size,), dtype).at[p["index"]].set(p["value"])


def top_k(size: int, fraction: float, dtype=jnp.float32) -> Compressor:
  """The k = ceil(fraction d) entries of largest magnitude, as (values, int32 indices);
  ||Q(x) - x||^2 <= (1 - k/d) ||x||^2 (Yan et al. 2023, Sec. 5, Top30 / Top40)."""
  k = kept(size, fraction)

  def encode(x, key):
    del key
    _, index = jax.lax.top_k(jnp.abs(x), k)
    return {"value": x[index], "index": index.astype(jnp.int32)}

  return Compressor(encode, _sparse_decode(size, dtype), k / size, False)


def random_k(size: int, fraction: float, dtype=jnp.float32) -> Compressor:
  """k = ceil(fraction d) coordinates drawn uniformly without replacement, as (values,
  int32 indices); E||Q(x) - x||^2 = (1 - k/d) ||x||^2."""
  k = kept(size, fraction)

  def encode(x, key):
    index = jax.random.choice(key, size, (k,), replace=False).astype(jnp.int32)
    return {"value": x[index], "index": index}

  return Compressor(encode, _sparse_decode(size, dtype), k / size, True)


def qsgd(size: int, levels: int, dtype=jnp.float32) -> Compressor:
  """QSGD with s levels (Alistarh et al. 2017, Eq. 2), scaled by 1 / (1 + omega):
  Q(x) = ||x|| sign(x) xi(x, s) / (s (1 + omega)), xi the unbiased stochastic rounding of
  s |x| / ||x||; contractive with delta = 1 / (1 + omega), omega = min(d/s^2, sqrt(d)/s)."""
  if not 1 <= levels <= 127:
    raise ValueError(f"qsgd levels={levels} must be in [1, 127] (sent as int8)")
  omega = min(size / levels ** 2, math.sqrt(size) / levels)
  scale = 1.0 / (levels * (1.0 + omega))

  def encode(x, key):
    norm = jnp.linalg.norm(x.astype(jnp.float32))
    level = levels * jnp.abs(x) / jnp.where(norm > 0, norm, 1.0)
    floor = jnp.floor(level)
    up = jax.random.uniform(key, x.shape) < level - floor
    signed = (jnp.sign(x) * (floor + up)).astype(jnp.int8)
    return {"level": signed, "norm": norm}

  def decode(p):
    return (p["norm"] * scale * p["level"].astype(jnp.float32)).astype(dtype)

  return Compressor(encode, decode, 1.0 / (1.0 + omega), True)


COMPRESSORS = {"identity": identity, "top_k": top_k, "random_k": random_k, "qsgd": qsgd}
PARAMS = {"identity": (), "top_k": ("fraction",), "random_k": ("fraction",), "qsgd": ("levels",)}


def build(name: str, size: int, **params) -> Compressor:
  """The compressor `name` for flat vectors of `size` entries."""
  if name not in COMPRESSORS:
    raise ValueError(f"compressor {name!r} is not one of {sorted(COMPRESSORS)}")
  return COMPRESSORS[name](size, **params)


class TreeCompressor(NamedTuple):
  """A compressor per leaf of a parameter pytree (leaves of one worker, unbatched)."""
  encode: Callable[[Any, jax.Array], Any]
  decode: Callable[[Any], Any]
  delta: float          # The smallest leaf's delta: the bound for the whole tree.
  stochastic: bool


def for_tree(name: str, abstract_tree, **params) -> TreeCompressor:
  """Compressor `name` applied to each leaf of `abstract_tree` on its own, as the authors do
  per parameter tensor; ||Q(x) - x||^2 <= (1 - delta) ||x||^2 holds leaf-wise, so for the tree."""
  leaves, treedef = jax.tree.flatten(abstract_tree)
  each = [build(name, math.prod(leaf.shape), dtype=leaf.dtype, **params)
          if name != "identity" else identity(math.prod(leaf.shape)) for leaf in leaves]

  def encode(tree, key):
    keys = jax.random.split(key, len(each))
    return [c.encode(x.reshape(-1), k) for c, x, k in zip(each, jax.tree.leaves(tree), keys)]

  def decode(payload):
    return jax.tree.unflatten(treedef, [c.decode(p).reshape(leaf.shape)
                                        for c, p, leaf in zip(each, payload, leaves)])

  return TreeCompressor(encode, decode, min(c.delta for c in each),
                        any(c.stochastic for c in each))
