"""LAMB: Adam's direction plus decoupled weight decay, rescaled per layer by a trust ratio."""
import jax
import jax.numpy as jnp
import optax

from big_batch.optim import trust_ratio


def scale_by_adam_without_bias_correction(
    b1=0.9, b2=0.999, eps=1e-6) -> optax.GradientTransformation:
  """Adam's direction without bias correction:  m_t / (sqrt(v_t) + eps).

  m_t = b1 m_{t-1} + (1-b1) g_t,  v_t = b2 v_{t-1} + (1-b2) g_t^2: apex
  FusedLAMB(bias_correction=False), and gluon-nlp's LAMB default, which cites the latest paper
  version as dropping the correction. State: optax.ScaleByAdamState.
  """
  adam = optax.scale_by_adam(b1, b2, eps)

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu, nu)
    return updates, optax.ScaleByAdamState(optax.safe_increment(state.count), mu, nu)

  return optax.GradientTransformation(adam.init, update_fn)


def lamb(
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-6,
    weight_decay=0.0,
    weight_decay_mask=None,
    trust_ratio_mask=None,
    max_grad_norm=None,
    bias_correction=True,
) -> optax.GradientTransformation:
  """LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning", Algorithm 2).

  Per layer (pytree leaf) w with gradient g, at step t:
    g <- g * min(1, max_grad_norm / ||G||)        (G: all gradients; only if max_grad_norm)
    m_t = b1 m_{t-1} + (1-b1) g,   v_t = b2 v_{t-1} + (1-b2) g^2
    r_t = m_hat / (sqrt(v_hat) + eps),   m_hat = m_t/(1-b1^t), v_hat = v_t/(1-b2^t)
    u_t = r_t + weight_decay * w                   (leaves in `weight_decay_mask`)
    w  <- w - lr_t * ||w|| / ||u_t|| * u_t          (leaves in `trust_ratio_mask`, else ratio 1)
  The ratio is 1 when ||w|| or ||u_t|| is 0, and norms are float32 (`trust_ratio`).

  With the defaults this is `optax.lamb`. The options cover the reference implementations:
  - `trust_ratio_mask`: leaves excluded from layer adaptation take a plain AdamW step.
    tensorflow_addons LAMB excludes its weight-decay exclusions by default, which is
    `trust_ratio_mask=weight_decay_mask`; optax.lamb adapts every leaf.
  - `max_grad_norm`: clip by the global norm before the moments (NVIDIA's NVLAMB, apex
    FusedLAMB with use_nvlamb=True, default 1.0 there).
  - `bias_correction=False`: r_t = m_t / (sqrt(v_t) + eps) (apex option, later paper text).

  Example (the BERT recipe: biases and norm parameters get neither decay nor adaptation):
    >>> from big_batch.optim import masks
    >>> tx = lamb(1e-3, weight_decay=0.01, weight_decay_mask=masks.exclude_bias_and_norm,
    ...           trust_ratio_mask=masks.exclude_bias_and_norm)
  """
  clip = [] if max_grad_norm is None else [optax.clip_by_global_norm(max_grad_norm)]
  if bias_correction:
    adam = optax.scale_by_adam(b1, b2, eps)
  else:
    adam = scale_by_adam_without_bias_correction(b1, b2, eps)
  return optax.chain(
      *clip,
      adam,
      optax.add_decayed_weights(weight_decay, weight_decay_mask),
      trust_ratio.scale_by_trust_ratio(mask=trust_ratio_mask),
      optax.scale_by_learning_rate(learning_rate),
  )
