"""Layer-wise trust ratios of LARS and LAMB, with norms in float32.

A layer is a pytree leaf and its norm is the flattened L2 norm of the leaf. Norms and ratios
are computed in float32 whatever the leaf dtype (optax's `scale_by_trust_ratio` uses the leaf
dtype, where sum(w^2) overflows in float16 and loses precision in bfloat16); for float32
leaves the two agree to rounding. A leaf whose weight norm or update norm is zero gets ratio 1,
otherwise zero-initialized layers would never move; there the ratio's gradient is zero, where
optax's is NaN when the update norm is zero.
"""
import jax
import jax.numpy as jnp
import optax

NO_PARAMS = "the trust ratio needs the params: call update(updates, state, params)"


def norm(x):
  """||x|| in float32, with a zero (not NaN) gradient at x = 0.

  The double `where` acts on the scalar sum of squares: optax.safe_norm guards with a
  `where` over all of x and a second norm, which makes XLA:CPU's update several times slower.
  """
  squared = jnp.sum(jnp.square(x.astype(jnp.float32)))
  positive = squared > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def ratio_of(scaled_param_norm, denominator, param_norm, update_norm):
  """scaled_param_norm / denominator, or 1 if a norm is 0 (then with a zero gradient, not NaN)."""
  zero = (param_norm == 0.0) | (update_norm == 0.0)
  return jnp.where(zero, 1.0, scaled_param_norm / jnp.where(zero, 1.0, denominator))


def scale_by_trust_ratio(trust_coefficient=1.0, eps=0.0, mask=None) -> optax.GradientTransformation:
  """Scales each leaf's update u by its trust ratio  eta * ||w|| / (||u|| + eps).

  The ratio of LAMB (You et al. 2020, Algorithm 2, with phi the identity) and of optax's LARS.
  `mask` (a pytree of bools or a callable of the params, as in optax) selects the leaves that
  are scaled; the others pass through unchanged.
  """

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(NO_PARAMS)

    def scale(update, param):
      param_norm, update_norm = norm(param), norm(update)
      ratio = ratio_of(trust_coefficient * param_norm, update_norm + eps, param_norm, update_norm)
      return update * ratio.astype(update.dtype)

    return jax.tree.map(scale, updates, params), state

  tx = optax.GradientTransformation(optax.init_empty_state, update_fn)
  return tx if mask is None else optax.masked(tx, mask)


def leaf_mask(mask, params):
  """`mask` (None, a pytree prefix of bools, or a callable of params) as one bool per leaf."""
  if mask is None:
    return jax.tree.map(lambda _: True, params)
  if callable(mask):
    mask = mask(params)
  return jax.tree.map(lambda on, subtree: jax.tree.map(lambda _: on, subtree), mask, params)


def scale_by_mlperf_trust_ratio(
    weight_decay=0.0,
    trust_coefficient=0.001,
    eps=0.0,
    weight_decay_mask=None,
    trust_ratio_mask=None,
) -> optax.GradientTransformation:
  """Adds weight decay and scales by the LARS ratio of the paper:  eta*||w|| / (||g|| + wd*||w||).

    u = g + wd * w                                       (leaves in `weight_decay_mask`)
    u <- eta * ||w|| / (||g|| + wd * ||w|| + eps) * u     (leaves in `trust_ratio_mask`)

  You, Gitman & Ginsburg 2017 (arXiv 1708.03888), Algorithm 1, and the MLPerf ResNet-50
  reference (mlcommons/training `lars_optimizer.py`). The ratio needs ||g|| before the decay
  is added, so unlike optax's chain the decay happens inside this transformation. The ratio is
  1 when ||w|| or ||g|| is zero, as in MLPerf. Callable masks receive the params.
  """

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(NO_PARAMS)

    def scale(grad, param, decayed, trusted):
      update = grad + weight_decay * param if decayed else grad
      if not trusted:
        return update
      param_norm, grad_norm = norm(param), norm(grad)
      denominator = grad_norm + (weight_decay * param_norm if decayed else 0.0) + eps
      ratio = ratio_of(trust_coefficient * param_norm, denominator, param_norm, grad_norm)
      return update * ratio.astype(update.dtype)

    decayed = leaf_mask(weight_decay_mask, params)
    trusted = leaf_mask(trust_ratio_mask, params)
    return jax.tree.map(scale, updates, params, decayed, trusted), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)
