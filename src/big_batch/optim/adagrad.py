"""AdaGrad-Norm (Ward, Wu & Bottou 2019) and the filter-wise AdaGrad-Norm of AdAdaGrad's code.

    >>> from big_batch import optim
    >>> tx = optim.adagrad_norm(learning_rate=8e-3, b0=0.1)

AdaGrad-Norm has one step size for all parameters, set by the running sum of squared
gradient norms (Ward et al. 2019, Alg. 1; the base optimizer of AdAdaGrad-Norm, Lau, Liu &
Kolar 2024):

    b_{k+1}^2 = b_k^2 + ||g_k||^2,    x_{k+1} = x_k - lr * g_k / (b_{k+1} + eps).

The filter-wise variant (timlautk/AdAdaGrad `adagradnorm.py`) keeps one such sum per output
channel of every kernel instead. Coordinate-wise AdaGrad is `optax.adagrad`.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByAdaGradNormState(NamedTuple):
  """b_k^2 of AdaGrad-Norm: a float32 scalar however many parameters there are."""
  sum_of_squares: jax.Array


def scale_by_adagrad_norm(b0: float = 0.1, eps: float = 1e-10) -> optax.GradientTransformation:
  """u_k = g_k / (b_{k+1} + eps) with b_{k+1}^2 = b_k^2 + ||g_k||^2 and b_0 = `b0`.

  ||g_k|| is the global l2 norm over every leaf (Ward et al. 2019, Alg. 1).
  """

  def init_fn(params):
    del params
    return ScaleByAdaGradNormState(jnp.asarray(b0, jnp.float32) ** 2)

  def update_fn(updates, state, params=None):
    del params
    sum_of_squares = state.sum_of_squares + optax.tree.norm(updates, squared=True).astype(
        jnp.float32)
    scale = 1.0 / (jnp.sqrt(sum_of_squares) + eps)
    updates = jax.tree.map(lambda g: (g * scale).astype(g.dtype), updates)
    return updates, ScaleByAdaGradNormState(sum_of_squares)

  return optax.GradientTransformation(init_fn, update_fn)


def adagrad_norm(learning_rate, b0: float = 0.1, eps: float = 1e-10
                 ) -> optax.GradientTransformation:
  """AdaGrad-Norm: x_{k+1} = x_k - lr * g_k / (b_{k+1} + eps), b_{k+1}^2 = b_k^2 + ||g_k||^2.

  Ward, Wu & Bottou 2019 (arXiv 1806.01811), Alg. 1; AdAdaGrad-Norm's optimizer (Lau, Liu &
  Kolar 2024, arXiv 2402.11215). The defaults are those of the AdAdaGrad code's
  AdaGrad-Norm: b_0^2 = 1e-2 and eps = 1e-10 added to b.

    >>> tx = adagrad_norm(learning_rate=8e-3)
  """
  return optax.chain(scale_by_adagrad_norm(b0, eps), optax.scale_by_learning_rate(learning_rate))


class ScaleByFilterwiseAdaGradNormState(NamedTuple):
  """Per leaf: one sum per output channel (kernels) or per coordinate (biases, scales)."""
  sum_of_squares: Any


def _name(path) -> Any:
  """The last key of a pytree path (None for a bare array)."""
  return getattr(path[-1], "key", getattr(path[-1], "name", None)) if path else None


def _filter_squares(g: jax.Array) -> jax.Array:
  """||g[..., j]||^2 for each output channel j (flax kernels keep it on the last axis)."""
  return jnp.sum(jnp.square(g.astype(jnp.float32)), axis=tuple(range(g.ndim - 1)))


def _squared_increments(grads):
  """What each leaf's sums grow by: a kernel's per-channel ||g||^2; a 1-D or scalar leaf's
  g^2, plus, for a 'bias' next to a 'kernel' with as many channels, that kernel's."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(grads)
  kernels = {path[:-1]: _filter_squares(g) for path, g in flat
             if g.ndim >= 2 and _name(path) == "kernel"}
  increments = []
  for path, g in flat:
    if g.ndim >= 2:
      increments.append(_filter_squares(g))
      continue
    own = jnp.square(g.astype(jnp.float32))
    kernel = kernels.get(path[:-1]) if _name(path) == "bias" else None
    increments.append(own + kernel if kernel is not None and kernel.shape == g.shape else own)
  return treedef.unflatten(increments)


def scale_by_filterwise_adagrad_norm(initial_accumulator_value: float = 1e-2,
                                     eps: float = 1e-10) -> optax.GradientTransformation:
  """AdaGrad-Norm per output channel: u[..., j] = g[..., j] / (sqrt(s_j) + eps).

  For a kernel (rank >= 2; output channels on the last axis, as flax stores them)
  s_j += ||g[..., j]||^2; for a bias s_j += g_j^2 + ||g_kernel[..., j]||^2 with the kernel of
  its own layer (the authors' "tricky way" of giving a bias its filter's step size); any
  other leaf is coordinate-wise AdaGrad. s starts at `initial_accumulator_value`.
  """

  def init_fn(params):
    return ScaleByFilterwiseAdaGradNormState(jax.tree.map(
        lambda s: jnp.full(s.shape, initial_accumulator_value, jnp.float32),
        jax.eval_shape(_squared_increments, params)))

  def update_fn(updates, state, params=None):
    del params
    sums = jax.tree.map(jnp.add, state.sum_of_squares, _squared_increments(updates))
    updates = jax.tree.map(lambda g, s: (g / (jnp.sqrt(s) + eps)).astype(g.dtype), updates, sums)
    return updates, ScaleByFilterwiseAdaGradNormState(sums)

  return optax.GradientTransformation(init_fn, update_fn)


def filterwise_adagrad_norm(learning_rate, initial_accumulator_value: float = 1e-2,
                            eps: float = 1e-10) -> optax.GradientTransformation:
  """AdaGrad-Norm with one step size per output channel: timlautk/AdAdaGrad `adagradnorm.py`
  (Lau, Liu & Kolar 2024), without its momentum, lr decay and weight decay (all 0 there).

  x[..., j] <- x[..., j] - lr * g[..., j] / (sqrt(s_j) + eps), s_j summing the squared norms
  of channel j's gradients (`scale_by_filterwise_adagrad_norm`).
  """
  return optax.chain(scale_by_filterwise_adagrad_norm(initial_accumulator_value, eps),
                     optax.scale_by_learning_rate(learning_rate))
