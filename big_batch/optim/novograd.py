"""NovoGrad: momentum over gradients normalized by a layer-wise second moment."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByLayerwiseSecondMomentState(NamedTuple):
  count: jax.Array  # int32, steps taken
  nu: optax.Updates  # one float32 scalar per leaf: the moving average of ||g||^2


def scale_by_layerwise_second_moment(b2=0.98, eps=1e-8) -> optax.GradientTransformation:
  """Normalizes each leaf's gradient by the moving average of its squared norm.

    v_1 = ||g_1||^2,   v_t = b2 v_{t-1} + (1-b2) ||g_t||^2,   g <- g / (sqrt(v_t) + eps)
  NovoGrad's layer-wise second moment (Ginsburg et al. 2019, arXiv 1905.11286, Algorithm 1),
  initialized with the first squared norm instead of bias correction; v is kept in float32.
  """

  def init_fn(params):
    return ScaleByLayerwiseSecondMomentState(
        count=jnp.zeros([], jnp.int32),
        nu=jax.tree.map(lambda _: jnp.zeros([], jnp.float32), params))

  def update_fn(updates, state, params=None):
    del params
    first = state.count == 0

    def moment(grad, nu):
      squared_norm = jnp.sum(jnp.square(grad.astype(jnp.float32)))
      return jnp.where(first, squared_norm, (1 - b2) * squared_norm + b2 * nu)

    nu = jax.tree.map(moment, updates, state.nu)
    updates = jax.tree.map(lambda g, v: (g / (jnp.sqrt(v) + eps)).astype(g.dtype), updates, nu)
    return updates, ScaleByLayerwiseSecondMomentState(optax.safe_increment(state.count), nu)

  return optax.GradientTransformation(init_fn, update_fn)


def novograd(
    learning_rate,
    b1=0.95,
    b2=0.98,
    eps=1e-8,
    weight_decay=0.0,
    weight_decay_mask=None,
    grad_averaging=False,
) -> optax.GradientTransformation:
  """NovoGrad (Ginsburg et al. 2019, arXiv 1905.11286, Algorithm 1).

  "Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep Networks".

  Per layer (pytree leaf) w with gradient g, at step t:
    v_t = b2 v_{t-1} + (1-b2) ||g||^2                       (v_1 = ||g_1||^2, float32)
    u_t = g / (sqrt(v_t) + eps) + weight_decay * w          (decay after the normalization,
                                                             leaves in `weight_decay_mask`)
    m_t = b1 m_{t-1} + u_t         (grad_averaging: m_t = b1 m_{t-1} + (1-b1) u_t; m_0 = 0)
    w  <- w - lr_t * m_t
  No bias correction: the first squared norm initializes v. The second moment is one scalar
  per leaf, so the state is about half of Adam's.

  Defaults are those of the NeMo and OpenSeq2Seq references (b1=0.95, b2=0.98, eps=1e-8).
  Differences from `optax.novograd`, which it equals for
  `novograd(lr, b1=0.9, b2=0.25, eps=1e-6, weight_decay=wd)`:
  - optax's defaults are b1=0.9, b2=0.25, eps=1e-6;
  - optax decays every leaf; here `weight_decay_mask` selects them;
  - optax has no gradient averaging; `grad_averaging=True` follows NeMo and OpenSeq2Seq
    (the (1-b1) factor at every step, the first included);
  - optax keeps v and ||g||^2 in the parameter dtype; here they are float32.

  Example:
    >>> from big_batch.optim import masks
    >>> tx = novograd(1e-2, weight_decay=1e-3, weight_decay_mask=masks.exclude_bias_and_norm)
  """
  return optax.chain(
      scale_by_layerwise_second_moment(b2, eps),
      optax.add_decayed_weights(weight_decay, weight_decay_mask),
      optax.ema(b1, debias=False) if grad_averaging else optax.trace(decay=b1),
      optax.scale_by_learning_rate(learning_rate),
  )
