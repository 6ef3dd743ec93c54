"""Ghost Batch Normalization (Hoffer, Hubara & Soudry 2017, "Train longer, generalize better").

A large batch of B examples is split into k = B / g contiguous ghost batches of g examples;
each is normalized with its own statistics, so the regularizing noise of small-batch BN
survives at large batch. `norm_layer` builds a normalization layer from a config string.
"""
from types import MappingProxyType
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer

NORM_KINDS = ("batch", "ghost", "none")


def _ghost_batches(x: jax.Array, ghost_batch_size: int | None) -> jax.Array:
  """[B, ..., F] -> [k, g * prod(...), F]: ghost batch l holds examples l*g .. (l+1)*g - 1."""
  batch = x.shape[0]
  size = batch if ghost_batch_size is None else ghost_batch_size
  if batch % size:
    raise ValueError(f"batch size {batch} is not divisible by ghost_batch_size={size}")
  return x.reshape(batch // size, -1, x.shape[-1])


def _ghost_stats(ghosts: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-ghost-batch mean and biased variance over all non-feature axes, each [k, F]."""
  mean = ghosts.mean(axis=1)
  # Two-pass variance: E[(x - mu)^2] cannot go negative, unlike E[x^2] - mu^2.
  var = jnp.square(ghosts - mean[:, None]).mean(axis=1)
  return mean, var


def _sequential_ema(running: jax.Array, stats: jax.Array, momentum: float) -> jax.Array:
  """k EMA steps r <- m r + (1 - m) s_l, l = 1..k, in closed form.

  r_k = m^k r_0 + sum_l (1 - m) m^(k - l) s_l  (Hoffer et al. 2017, Algorithm 1, with the
  exponent of the first term being the number of ghost batches, as their code does). A
  closed form rather than `lax.scan`: one contraction over the ghost axis, which the
  data-parallel sharding turns into a single all-reduce.
  """
  k = stats.shape[0]
  decay = momentum ** jnp.arange(k - 1, -1, -1, dtype=jnp.float32)
  return momentum**k * running + (1 - momentum) * jnp.tensordot(decay, stats, axes=1)


class GhostBatchNorm(nnx.Module):
  """Batch norm over ghost batches of `ghost_batch_size` examples (Hoffer et al. 2017, Sec. 4).

  Training, for ghost batch X^l (l = 1..k) and every feature (last axis):
    y = scale * (X^l - mu_l) / sqrt(var_l + epsilon) + bias,
  with mu_l, var_l the mean and biased variance of X^l over all non-feature axes. The running
  statistics take one EMA step per ghost batch, in ghost order:
    running <- momentum * running + (1 - momentum) * stat_l,   l = 1..k,
  the flax convention (momentum=0.99 here is PyTorch's momentum=0.01). Like `nnx.BatchNorm`
  the running variance is the biased one (PyTorch, and so the paper's code, stores the
  unbiased one). Evaluation (`use_running_average=True`, set by `model.eval()`) normalizes
  with the running statistics, like `nnx.BatchNorm`.

  `ghost_batch_size=None` makes the whole batch one ghost batch: plain batch norm. Ghost
  batches are cut from the global batch, so under `jax.jit` the result does not depend on
  the device count; a data-parallel sharding that holds whole ghost batches on each device
  computes the statistics without communication.
  """

  def __init__(
      self,
      num_features: int,
      *,
      ghost_batch_size: int | None = None,
      use_running_average: bool = False,
      momentum: float = 0.99,
      epsilon: float = 1e-5,
      dtype: Dtype | None = None,
      param_dtype: Dtype = jnp.float32,
      use_bias: bool = True,
      use_scale: bool = True,
      bias_init: Initializer = nnx.initializers.zeros_init(),
      scale_init: Initializer = nnx.initializers.ones_init(),
      rngs: nnx.Rngs,
      bias_metadata: Mapping[str, Any] = MappingProxyType({}),
      scale_metadata: Mapping[str, Any] = MappingProxyType({}),
  ):
    if ghost_batch_size is not None and ghost_batch_size <= 0:
      raise ValueError(f"ghost_batch_size={ghost_batch_size} must be positive or None")
    shape = (num_features,)
    self.mean = nnx.BatchStat(jnp.zeros(shape, jnp.float32))
    self.var = nnx.BatchStat(jnp.ones(shape, jnp.float32))
    self.scale = (nnx.Param(scale_init(rngs.params(), shape, param_dtype), **scale_metadata)
                  if use_scale else nnx.data(None))
    self.bias = (nnx.Param(bias_init(rngs.params(), shape, param_dtype), **bias_metadata)
                 if use_bias else nnx.data(None))
    self.num_features = num_features
    self.ghost_batch_size = ghost_batch_size
    self.use_running_average = use_running_average
    self.momentum = momentum
    self.epsilon = epsilon
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.use_bias = use_bias
    self.use_scale = use_scale

  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    """Normalizes `x` [B, ..., num_features]; the argument overrides the attribute."""
    if use_running_average is None:
      use_running_average = self.use_running_average
    params = [p[...] for p in (self.scale, self.bias) if p is not None]
    out_dtype = jnp.result_type(x, *params) if self.dtype is None else self.dtype
    # Statistics in at least float32, as nnx.BatchNorm: bf16 sums lose the small variances.
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if use_running_average:
      y = self._normalize(x32, self.mean[...], self.var[...])
    else:
      ghosts = _ghost_batches(x32, self.ghost_batch_size)
      mean, var = _ghost_stats(ghosts)
      self._update_running_stats(mean, var)
      y = self._normalize(ghosts, mean[:, None], var[:, None]).reshape(x.shape)
    return y.astype(out_dtype)

  def _normalize(self, x: jax.Array, mean: jax.Array, var: jax.Array) -> jax.Array:
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    if self.scale is not None:
      y = y * self.scale[...]
    if self.bias is not None:
      y = y + self.bias[...]
    return y

  def _update_running_stats(self, mean: jax.Array, var: jax.Array):
    # The running statistics only serve evaluation; no loss is differentiated through them.
    mean, var = jax.lax.stop_gradient((mean, var))
    self.mean[...] = _sequential_ema(self.mean[...], mean, self.momentum)
    self.var[...] = _sequential_ema(self.var[...], var, self.momentum)

  def set_view(self, use_running_average: bool | None = None):
    """Lets `nnx.view(model, use_running_average=...)` switch modes, as for nnx.BatchNorm."""
    if use_running_average is not None:
      self.use_running_average = use_running_average


def norm_layer(kind: str, num_features: int, *, ghost_batch_size: int | None = None,
               rngs: nnx.Rngs, **kwargs) -> nnx.BatchNorm | GhostBatchNorm | None:
  """The normalization layer a config names: 'batch', 'ghost' or 'none' (None: no layer).

  `kwargs` (momentum, epsilon, ...) go to the layer's constructor. A `ghost_batch_size`
  with any kind but 'ghost' is rejected rather than silently ignored.
  """
  if kind not in NORM_KINDS:
    raise ValueError(f"norm kind {kind!r} is not one of {NORM_KINDS}")
  if kind != "ghost" and ghost_batch_size is not None:
    raise ValueError(f"ghost_batch_size={ghost_batch_size} needs norm kind 'ghost', got {kind!r}")
  if kind == "none":
    return None
  if kind == "batch":
    return nnx.BatchNorm(num_features, rngs=rngs, **kwargs)
  return GhostBatchNorm(num_features, ghost_batch_size=ghost_batch_size, rngs=rngs, **kwargs)
