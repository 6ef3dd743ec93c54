"""The small-batch baselines: SGD with momentum and AdamW, with named weight-decay masks."""
import optax


def sgd(learning_rate, momentum=0.9, nesterov=False, weight_decay=0.0, weight_decay_mask=None):
  """SGD with (Nesterov) momentum and L2 weight decay added to the gradient.

  u = -lr * m,  m <- momentum * m + (g + weight_decay * w)   (Goyal et al. 2017, Eq. 9/10).
  """
  return optax.chain(
      optax.add_decayed_weights(weight_decay, weight_decay_mask),
      optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov),
  )


def adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, weight_decay_mask=None):
  """optax.adamw (Loshchilov & Hutter 2019, Algorithm 2) with big_batch's argument names."""
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                     mask=weight_decay_mask)
