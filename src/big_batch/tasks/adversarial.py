"""Input perturbations that raise the loss: FGSM and k-step PGD in an l-inf or l2 ball.

    delta^0 = 0,   delta^(j+1) = Proj_eps( delta^j + step_size * d(grad_x loss(x + delta^j)) )

with d(g) = sign(g) for l-inf and g / ||g||_2 for l2, norms and projections per example (over
every axis but the first). One step of size eps is FGSM (Goodfellow et al. 2015, Eq. 3); k
steps is PGD (Madry et al. 2018, Eq. 2) started at delta = 0, without the random start.
Units are the inputs' own: eps and step_size are distances in the space the model reads.
"""
from typing import Callable

import jax
import jax.numpy as jnp

NORMS = ("linf", "l2")
_TINY = 1e-12  # Below any gradient or perturbation norm that matters; keeps 0 / 0 at 0.


def _per_example_l2(x: jax.Array) -> jax.Array:
  """||x_i||_2 over every axis but the first, shaped to broadcast against x."""
  axes = tuple(range(1, x.ndim))
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True))


def ascent_direction(grad: jax.Array, norm: str) -> jax.Array:
  """Each example's unit-norm steepest-ascent direction: sign(g), or g / ||g||_2 (0 if g = 0)."""
  if norm == "linf":
    return jnp.sign(grad)
  return grad / jnp.maximum(_per_example_l2(grad), _TINY)


def project(delta: jax.Array, norm: str, epsilon: float) -> jax.Array:
  """Each example's delta moved to the nearest point of {||delta||_norm <= epsilon}."""
  if norm == "linf":
    return jnp.clip(delta, -epsilon, epsilon)
  return delta * jnp.minimum(1.0, epsilon / jnp.maximum(_per_example_l2(delta), _TINY))


def pgd(input_grad: Callable[[jax.Array], jax.Array], x: jax.Array, *, norm: str,
        epsilon: float, step_size: float, steps: int,
        first_grad: jax.Array | None = None) -> jax.Array:
  """delta after `steps` projected ascent steps from 0 (module docstring).

  `input_grad(x_hat)` is grad_x loss(w; x_hat, y) at the attacked weights. `first_grad`, if
  given, is input_grad(x), computed by the caller (e.g. in a pass batched with other work).
  """
  grad = input_grad(x) if first_grad is None else first_grad
  delta = project(step_size * ascent_direction(grad, norm), norm, epsilon)

  def ascend(_, delta):
    step = step_size * ascent_direction(input_grad(x + delta), norm)
    return project(delta + step, norm, epsilon)

  return jax.lax.fori_loop(1, steps, ascend, delta) if steps > 1 else delta


def perturbation_norm(delta: jax.Array, norm: str) -> jax.Array:
  """The mean over examples of ||delta_i||_norm (a metric: how large the attack was)."""
  if norm == "linf":
    return jnp.max(jnp.abs(delta.reshape(delta.shape[0], -1)), axis=1).mean()
  return _per_example_l2(delta).mean()
