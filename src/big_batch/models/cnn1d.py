"""A 1-D CNN for sequence classification (the mnist1d baseline ConvBase of Greydanus 2020)."""
from typing import Sequence

import jax
from flax import nnx

from big_batch.models.normalization import norm_layer


class CNN1D(nnx.Module):
  """Conv(k=5, stride 2) -> Conv(k=3, stride 2) x (n-1), ReLU, optional norm, dense head.

  Inputs are [batch, length] (one channel) or [batch, length, channels]. `norm` is 'none',
  'batch' or 'ghost' (`models.normalization.norm_layer`); `norm_momentum` is the running-
  statistics EMA momentum in flax's convention (0.9 here is PyTorch's momentum=0.1).
  """

  def __init__(self, input_shape: Sequence[int], num_classes: int, *, channels=(25, 25, 25),
               norm: str = "none", ghost_batch_size: int | None = None,
               norm_momentum: float = 0.99, rngs: nnx.Rngs):
    length = input_shape[0]
    in_channels = input_shape[1] if len(input_shape) > 1 else 1
    convs, norms = [], []
    for i, out_channels in enumerate(channels):
      kernel = 5 if i == 0 else 3
      # A bias in front of a norm layer has zero gradient (the norm removes the mean).
      convs.append(nnx.Conv(in_channels, out_channels, kernel_size=(kernel,), strides=(2,),
                            padding=((1, 1),), use_bias=norm == "none", rngs=rngs))
      norms.append(norm_layer(norm, out_channels, ghost_batch_size=ghost_batch_size,
                              momentum=norm_momentum, rngs=rngs))
      length = (length + 2 - kernel) // 2 + 1
      in_channels = out_channels
    self.convs = nnx.List(convs)
    self.norms = nnx.List(norms)
    self.head = nnx.Linear(length * in_channels, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim == 2:
      x = x[..., None]
    for conv, norm in zip(self.convs, self.norms):
      x = conv(x)
      if norm is not None:
        x = norm(x)
      x = nnx.relu(x)
    return self.head(x.reshape(x.shape[0], -1))
