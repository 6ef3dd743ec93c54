"""Layer-wise adaptive optimizers: LAMB, LARS and NovoGrad, as optax chains.

Each rescales or normalizes the step per layer (pytree leaf): LARS and LAMB by a trust ratio
||w|| / ||u|| (`trust_ratio.py`), NovoGrad by a layer-wise second moment. Norms are float32.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from big_batch.optim import trust_ratio, two_pass


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

  With the defaults this is `optax.lamb`, and the state is that of the optax chain
  [clip_by_global_norm,] scale_by_adam, add_decayed_weights, scale_by_trust_ratio,
  scale_by_learning_rate; the update runs in two passes per leaf without the chain's
  direction-sized scratch buffer (two_pass.py). The options cover the reference implementations:
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
  scale = optax.scale_by_learning_rate(learning_rate)
  chain = optax.chain(
      *clip,
      adam,
      optax.add_decayed_weights(weight_decay, weight_decay_mask),
      trust_ratio.scale_by_trust_ratio(mask=trust_ratio_mask),
      scale,
  )
  if callable(weight_decay):  # A schedule keeps its own count in the chain's decay state.
    return chain
  # The chain's state, updated in two passes per leaf without a scratch buffer (two_pass.py).
  return optax.GradientTransformationExtraArgs(chain.init, two_pass.lamb_update(
      clip, b1, b2, eps, weight_decay, weight_decay_mask, trust_ratio_mask, bias_correction,
      scale))


LARS_RATIOS = ("optax", "mlperf")


def lars(
    learning_rate,
    momentum=0.9,
    weight_decay=0.0,
    trust_coefficient=0.001,
    eps=0.0,
    nesterov=False,
    weight_decay_mask=None,
    trust_ratio_mask=None,
    ratio="optax",
) -> optax.GradientTransformation:
  """LARS (You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional Networks").

  Per layer (pytree leaf) w with gradient g, at step t, eta = `trust_coefficient`:
    u_t   = g + weight_decay * w                            (leaves in `weight_decay_mask`)
    s_t   = eta * ||w|| / (||u_t|| + eps)                    ratio="optax"
    s_t   = eta * ||w|| / (||g|| + weight_decay*||w|| + eps)  ratio="mlperf" (the paper)
    tau_t = mu * tau_{t-1} + lr_t * s_t * u_t                (s_t = 1 outside `trust_ratio_mask`)
    w    <- w - tau_t          (nesterov: w <- w - (mu * tau_t + lr_t * s_t * u_t))
  The ratio is 1 when ||w|| or the norm in its zero test (||u_t||, resp. ||g||) is 0, so a
  zero-initialized leaf takes a raw lr_t * u_t step. Norms are float32 (`trust_ratio`).

  The learning rate sits inside the momentum buffer, as in the paper, optax.lars and the MLPerf
  reference (optax.sgd puts it outside; the two differ under a schedule). ratio="optax" equals
  `optax.lars` (the SimCLR form); ratio="mlperf" is the paper's ratio, used by the MLPerf
  ResNet-50 reference, and never larger than the optax one (triangle inequality); the two
  agree when weight_decay=0. With ratio="optax" the state is that of the optax chain and the
  update runs in two passes per leaf without its scratch buffer (two_pass.py). The MLPerf
  recipe excludes biases and batch-norm parameters from both decay and adaptation:
  `weight_decay_mask=trust_ratio_mask=masks.exclude_bias_and_norm`.

  Example:
    >>> from big_batch.optim import masks
    >>> tx = lars(10.0, weight_decay=5e-5, ratio="mlperf",
    ...           weight_decay_mask=masks.exclude_bias_and_norm,
    ...           trust_ratio_mask=masks.exclude_bias_and_norm)
  """
  scale = optax.scale_by_learning_rate(learning_rate)
  trace = optax.trace(decay=momentum, nesterov=nesterov)
  if ratio == "mlperf":
    return optax.chain(
        trust_ratio.scale_by_mlperf_trust_ratio(
            weight_decay, trust_coefficient, eps, weight_decay_mask, trust_ratio_mask),
        scale,
        trace,
    )
  if ratio != "optax":
    raise ValueError(f"ratio={ratio!r} is not one of {LARS_RATIOS}")
  chain = optax.chain(
      optax.add_decayed_weights(weight_decay, weight_decay_mask),
      trust_ratio.scale_by_trust_ratio(trust_coefficient, eps, mask=trust_ratio_mask),
      scale,
      trace,
  )
  if callable(weight_decay):  # A schedule keeps its own count in the chain's decay state.
    return chain
  # The chain's state, updated in two passes per leaf without a scratch buffer (two_pass.py).
  return optax.GradientTransformationExtraArgs(chain.init, two_pass.lars_update(
      weight_decay, trust_coefficient, eps, weight_decay_mask, trust_ratio_mask, scale, trace))


class ScaleByLayerwiseSecondMomentState(NamedTuple):
  count: jax.Array  # int32, steps taken
  nu: optax.Updates  # one float32 scalar per leaf: the moving average of ||g||^2


SECOND_MOMENT_INITS = ("first_nonzero", "first_step")


def scale_by_layerwise_second_moment(
    b2=0.98, eps=1e-8, second_moment_init="first_nonzero") -> optax.GradientTransformation:
  """Normalizes each leaf's gradient by the moving average of its squared norm.

    v_t = ||g_t||^2 if v_{t-1} = 0, else b2 v_{t-1} + (1-b2) ||g_t||^2;   g <- g / (sqrt(v_t) + eps)
  with second_moment_init="first_nonzero"; "first_step" takes the first branch at t = 1 only.
  NovoGrad's layer-wise second moment (Ginsburg et al. 2019, arXiv 1905.11286, Algorithm 1),
  initialized with a squared norm instead of bias correction; v is kept in float32.
  "first_nonzero" is NeMo's and OpenSeq2Seq's test of v itself, so a leaf whose first
  gradients are zero (an unused embedding row, a frozen branch) starts from its first
  nonzero one; "first_step" is optax's test of the step count, after which such a leaf's
  first nonzero step is 1/sqrt(1-b2) times too large.
  """
  if second_moment_init not in SECOND_MOMENT_INITS:
    raise ValueError(f"second_moment_init={second_moment_init!r} is not one of "
                     f"{SECOND_MOMENT_INITS}")

  def init_fn(params):
    return ScaleByLayerwiseSecondMomentState(
        count=jnp.zeros([], jnp.int32),
        nu=jax.tree.map(lambda _: jnp.zeros([], jnp.float32), params))

  def update_fn(updates, state, params=None):
    del params

    def moment(grad, nu):
      squared_norm = jnp.sum(jnp.square(grad.astype(jnp.float32)))
      first = nu == 0 if second_moment_init == "first_nonzero" else state.count == 0
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
    second_moment_init="first_nonzero",
) -> optax.GradientTransformation:
  """NovoGrad (Ginsburg et al. 2019, arXiv 1905.11286, Algorithm 1).

  "Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep Networks".

  Per layer (pytree leaf) w with gradient g, at step t:
    v_t = b2 v_{t-1} + (1-b2) ||g||^2                       (v_t = ||g||^2 while v_{t-1} = 0;
                                                             float32)
    u_t = g / (sqrt(v_t) + eps) + weight_decay * w          (decay after the normalization,
                                                             leaves in `weight_decay_mask`)
    m_t = b1 m_{t-1} + u_t         (grad_averaging: m_t = b1 m_{t-1} + (1-b1) u_t; m_0 = 0)
    w  <- w - lr_t * m_t
  No bias correction: the first nonzero squared norm initializes v. The second moment is one
  scalar per leaf, so the state is about half of Adam's.

  Defaults are those of the NeMo and OpenSeq2Seq references (b1=0.95, b2=0.98, eps=1e-8), and
  so is the initialization: both test v, not the step (NeMo nemo/core/optim/novograd.py,
  `if exp_avg_sq == 0: exp_avg_sq.copy_(norm)`; OpenSeq2Seq open_seq2seq/optimizers/novograd.py,
  `tf.cond(tf.equal(self._grads_ema[i], 0.), lambda: g_2, ...)`). The paper's v_1 = ||g_1||^2
  does not say what a zero g_1 should do, and with the step test a leaf whose first gradient
  is zero gets v_2 = (1-b2) ||g_2||^2: a first real step 1/sqrt(1-b2) (7x for b2=0.98) too
  large. `second_moment_init="first_step"` tests the step instead, as optax does.

  Differences from `optax.novograd`, which it equals for
  `novograd(lr, b1=0.9, b2=0.25, eps=1e-6, weight_decay=wd, second_moment_init="first_step")`,
  and with the default initialization whenever no leaf's first gradient is zero:
  - optax's defaults are b1=0.9, b2=0.25, eps=1e-6;
  - optax initializes v at step 1 (`count_inc == 1`) whatever the gradient; here at the
    first nonzero gradient unless `second_moment_init="first_step"`;
  - optax decays every leaf; here `weight_decay_mask` selects them;
  - optax has no gradient averaging; `grad_averaging=True` follows NeMo and OpenSeq2Seq
    (the (1-b1) factor at every step, the first included);
  - optax keeps v and ||g||^2 in the parameter dtype; here they are float32.

  Example:
    >>> from big_batch.optim import masks
    >>> tx = novograd(1e-2, weight_decay=1e-3, weight_decay_mask=masks.exclude_bias_and_norm)
  """
  return optax.chain(
      scale_by_layerwise_second_moment(b2, eps, second_moment_init),
      optax.add_decayed_weights(weight_decay, weight_decay_mask),
      optax.ema(b1, debias=False) if grad_averaging else optax.trace(decay=b1),
      optax.scale_by_learning_rate(learning_rate),
  )
