"""CIFAR-style residual networks (He et al. 2016, "Deep Residual Learning", Sec. 4.2), 1-D or 2-D.

ResNet-(6n+2) (20, 32, 44, 56, 110): a 3x3 stem, three stages of n basic blocks with 16, 32,
64 channels (strides 1, 2, 2), global average pooling and a dense head; shortcuts that change
shape are the paper's option A (subsample, then zero-pad the new channels), so ResNet-20 has
the paper's 0.27M parameters. ResNet-18: the CIFAR variant of the ImageNet net (3x3 stem of
64, no max-pool, four stages of two blocks with 64..512 channels) with projection shortcuts
(1x1 conv + norm), 11.17M parameters. The same nets run on sequences (mnist1d) with 1-D
convolutions of width 3.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from big_batch.models.normalization import norm_layer

# depth -> (blocks per stage, shortcut kind); widths double from stage to stage.
_LAYOUTS = {18: ((2, 2, 2, 2), "projection"),
            **{6 * n + 2: ((n, n, n), "pad") for n in (3, 5, 7, 9, 18)}}
_DEFAULT_WIDTH = {18: 64}


def _conv(in_channels, out_channels, kernel, stride, ndim, bias, rngs):
  # He et al.'s initialization (fan-in, gain 2), as the reference CIFAR implementations use.
  return nnx.Conv(in_channels, out_channels, kernel_size=(kernel,) * ndim,
                  strides=(stride,) * ndim, padding=((kernel // 2,) * 2,) * ndim,
                  use_bias=bias, kernel_init=nnx.initializers.he_normal(), rngs=rngs)


class BasicBlock(nnx.Module):
  """relu(norm(conv(relu(norm(conv(x))))) + shortcut(x)), 3-wide convs (He et al. 2016, Fig. 2)."""

  def __init__(self, in_channels: int, out_channels: int, stride: int, ndim: int,
               shortcut: str, norm: str, ghost_batch_size, norm_momentum: float,
               rngs: nnx.Rngs):
    bias = norm == "none"  # A bias in front of a norm layer has zero gradient.
    new_norm = lambda: norm_layer(norm, out_channels, ghost_batch_size=ghost_batch_size,
                                  momentum=norm_momentum, rngs=rngs)
    self.conv1 = _conv(in_channels, out_channels, 3, stride, ndim, bias, rngs)
    self.norm1 = new_norm()
    self.conv2 = _conv(out_channels, out_channels, 3, 1, ndim, bias, rngs)
    self.norm2 = new_norm()
    self.stride, self.ndim = stride, ndim
    reshapes = stride != 1 or in_channels != out_channels
    project = reshapes and shortcut == "projection"
    self.projection = (_conv(in_channels, out_channels, 1, stride, ndim, bias, rngs)
                       if project else None)
    self.projection_norm = new_norm() if project else None
    self.pad = out_channels - in_channels if reshapes and not project else 0

  def _shortcut(self, x: jax.Array) -> jax.Array:
    if self.projection is not None:
      x = self.projection(x)
      return x if self.projection_norm is None else self.projection_norm(x)
    if self.stride != 1:  # Option A: every stride-th position, the rest of the map dropped.
      x = x[(slice(None),) + (slice(None, None, self.stride),) * self.ndim]
    if self.pad:  # ... and the new channels zero, half in front and half behind.
      front = self.pad // 2
      x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(front, self.pad - front)])
    return x

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv1(x)
    y = nnx.relu(y if self.norm1 is None else self.norm1(y))
    y = self.conv2(y)
    y = y if self.norm2 is None else self.norm2(y)
    return nnx.relu(y + self._shortcut(x))


class ResNet(nnx.Module):
  """A CIFAR-style ResNet of `depth` 18 or 6n+2 (20, 32, 44, 56, 110) for [batch, *input_shape].

  `input_shape` (L,) or (L, C) is a sequence (1-D convs), (H, W, C) an image (2-D convs).
  `width` is the first stage's channels (16 for 6n+2, 64 for 18, as the papers); later stages
  double it. `norm` is 'batch', 'ghost' (with `ghost_batch_size`) or 'none'
  (`models.normalization.norm_layer`); `norm_momentum` is flax's EMA momentum of the running
  statistics. Without norm the convs get biases.
  """

  def __init__(self, input_shape: Sequence[int], num_classes: int, *, depth: int = 20,
               width: int | None = None, norm: str = "batch",
               ghost_batch_size: int | None = None, norm_momentum: float = 0.99,
               rngs: nnx.Rngs):
    if depth not in _LAYOUTS:
      raise ValueError(f"ResNet depth={depth} is not one of {sorted(_LAYOUTS)}")
    blocks, shortcut = _LAYOUTS[depth]
    width = width or _DEFAULT_WIDTH.get(depth, 16)
    self.ndim = 2 if len(input_shape) == 3 else 1
    in_channels = input_shape[-1] if len(input_shape) > 1 else 1
    self.stem = _conv(in_channels, width, 3, 1, self.ndim, norm == "none", rngs)
    self.stem_norm = norm_layer(norm, width, ghost_batch_size=ghost_batch_size,
                                momentum=norm_momentum, rngs=rngs)
    layers, channels = [], width
    for stage, count in enumerate(blocks):
      out_channels = width * 2**stage
      for i in range(count):
        stride = 2 if stage > 0 and i == 0 else 1
        layers.append(BasicBlock(channels, out_channels, stride, self.ndim, shortcut, norm,
                                 ghost_batch_size, norm_momentum, rngs))
        channels = out_channels
    self.blocks = nnx.List(layers)
    self.head = nnx.Linear(channels, num_classes, kernel_init=nnx.initializers.he_normal(),
                           rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim == self.ndim + 1:  # A sequence without a channel axis.
      x = x[..., None]
    x = self.stem(x)
    x = nnx.relu(x if self.stem_norm is None else self.stem_norm(x))
    for block in self.blocks:
      x = block(x)
    return self.head(x.mean(axis=tuple(range(1, 1 + self.ndim))))
