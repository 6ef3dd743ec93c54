"""LARS: SGD with momentum whose step is rescaled per layer by a trust ratio."""
import optax

from big_batch.optim import trust_ratio

RATIOS = ("optax", "mlperf")


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
  agree when weight_decay=0. The MLPerf recipe excludes biases and batch-norm parameters from
  both decay and adaptation: `weight_decay_mask=trust_ratio_mask=masks.exclude_bias_and_norm`.

  Example:
    >>> from big_batch.optim import masks
    >>> tx = lars(10.0, weight_decay=5e-5, ratio="mlperf",
    ...           weight_decay_mask=masks.exclude_bias_and_norm,
    ...           trust_ratio_mask=masks.exclude_bias_and_norm)
  """
  if ratio == "optax":
    direction = [
        optax.add_decayed_weights(weight_decay, weight_decay_mask),
        trust_ratio.scale_by_trust_ratio(trust_coefficient, eps, mask=trust_ratio_mask),
    ]
  elif ratio == "mlperf":
    direction = [
        trust_ratio.scale_by_mlperf_trust_ratio(
            weight_decay, trust_coefficient, eps, weight_decay_mask, trust_ratio_mask),
    ]
  else:
    raise ValueError(f"ratio={ratio!r} is not one of {RATIOS}")
  return optax.chain(
      *direction,
      optax.scale_by_learning_rate(learning_rate),
      optax.trace(decay=momentum, nesterov=nesterov),
  )
