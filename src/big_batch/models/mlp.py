"""A multilayer perceptron classifier."""
import math
from typing import Sequence

import jax
from flax import nnx

from big_batch.models.normalization import norm_layer


class MLP(nnx.Module):
  """Flatten -> [Dense -> optional norm -> ReLU] x len(hidden) -> Dense."""

  def __init__(self, input_shape: Sequence[int], num_classes: int, *, hidden=(256, 256),
               norm: str = "none", ghost_batch_size: int | None = None,
               norm_momentum: float = 0.99, rngs: nnx.Rngs):
    sizes = [math.prod(input_shape), *hidden]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    self.norms = nnx.List([norm_layer(norm, b, ghost_batch_size=ghost_batch_size,
                                       momentum=norm_momentum, rngs=rngs)
                           for b in hidden])
    self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for layer, norm in zip(self.layers, self.norms):
      x = layer(x)
      if norm is not None:
        x = norm(x)
      x = nnx.relu(x)
    return self.head(x)
