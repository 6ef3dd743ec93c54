"""Adaptive-sampling batch-size tests: the batch size rule of AdAdaGrad (Lau, Liu & Kolar 2024).

From the per-example gradients u_i = grad f_i(x_k) of a step's batch B (b rows, at the
pre-update weights) and its gradient g = g_B = (1/b) sum_i u_i, each test proposes the batch
size at which g would be accurate enough (Lau et al. 2024, arXiv 2402.11215, Sec. 3; the
sample versions of timlautk/AdAdaGrad `tests.py`):

  norm (Byrd et al. 2012):             sum_j Var_i(u_ij) / (eta^2 ||g||^2)
  inner_product (Bollapragada et al.): Var_i(<u_i, g>) / (theta^2 ||g||^4)
  orthogonality (Bollapragada et al.): sum_j Var_i(w_ij) / (nu^2 ||g||^2),
                                       w_i = u_i - (<u_i, g> / ||g||^2) g
  augmented_inner_product:             the larger of the last two (the code's 'ip+orth')
  coordinate (AdAdaGrad's coordinate-wise norm test):
                                       max_j Var_i(u_ij) / (eta^2 g_j^2)

Var_i is the sample variance over the b rows (correction 1); b_{k+1} = max(b_k, ceil(proposal)),
capped (`next_batch_size`).

Micro-batches and devices. Per-example gradients are needed for one micro-batch at a time
only: `moments` of each of k equal micro-batches, averaged, give the whole batch's variance by
the law of total variance, Var = mean of within-micro-batch variances + variance of the
micro-batch means (`variance`), exactly. Inside a micro-batch sharded over devices the
partitioner reduces across them. <u_i, g> needs g, known after the last micro-batch: a second
pass takes it as the directional derivative of each example's loss along g, one forward-mode
jvp per micro-batch, with no per-example gradient (`inner_products`). Since the mean of the
w_i is 0, sum_j Var_i(w_ij) = sum_j Var_i(u_ij) - Var_i(<u_i, g>) / ||g||^2, so the
orthogonality test needs nothing more.

The inner products here are over the whole parameter vector, as the tests are stated; the
authors' code takes them per parameter tensor (against that tensor's part of g) and sums the
variances, which drops the covariances between tensors.
"""
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

TESTS = ("norm", "inner_product", "orthogonality", "augmented_inner_product", "coordinate")
# Tests that need Var_i(<u_i, g>), and so the second (jvp) pass.
INNER_PRODUCT_TESTS = ("inner_product", "orthogonality", "augmented_inner_product")


class Moments(NamedTuple):
  """Per-coordinate moments of per-example values over a micro-batch of m rows, or their
  means over k equal micro-batches: then `mean` is the batch mean."""
  mean: Any         # (1/m) sum_i u_i
  within: Any       # (1/m) sum_i (u_i - mean)^2
  mean_square: Any  # mean^2


def moments(per_example) -> Moments:
  """The `Moments` of a pytree whose leaves have one row per example on the leading axis."""
  mean = jax.tree.map(lambda u: u.mean(0), per_example)
  within = jax.tree.map(lambda u, m: jnp.square(u - m).mean(0), per_example, mean)
  return Moments(mean, within, jax.tree.map(jnp.square, mean))


def mean_of(stacked: Moments) -> Moments:
  """The mean of moments stacked on a leading micro-batch axis (e.g. by `jax.lax.map`)."""
  return jax.tree.map(lambda x: x.mean(0), stacked)


def variance(averaged: Moments, batch_size: int):
  """Var_i per coordinate with correction 1 over a batch of `batch_size` rows whose k equal
  micro-batches' `moments` average to `averaged`:

    Var = b/(b-1) * (mean_k within_k + mean_k mean_k^2 - (mean_k mean_k)^2).
  """
  correction = batch_size / (batch_size - 1)
  return jax.tree.map(lambda w, s, m: jnp.maximum(w + s - m * m, 0.0) * correction,
                      averaged.within, averaged.mean_square, averaged.mean)


def per_example_gradients(loss_fn: Callable, params, batch):
  """u_i = grad f_i for every row: `jax.vmap(jax.grad)` of `loss_fn(params, rows)` (the mean
  loss over `rows`) on each row alone. Leaves: [rows, *param.shape]."""

  def one(params, row):
    return loss_fn(params, jax.tree.map(lambda x: x[None], row))

  return jax.vmap(jax.grad(one), in_axes=(None, 0))(params, batch)


def inner_products(losses_fn: Callable, params, batch, direction) -> jax.Array:
  """<grad f_i, direction> for every row, as d/dt f_i(params + t direction) at t = 0: one
  `jax.jvp` of `losses_fn(params, rows) -> [rows]` (the per-example losses)."""
  return jax.jvp(lambda p: losses_fn(p, batch), (params,), (direction,))[1]


def _sum(tree) -> jax.Array:
  return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree))


def statistics(test: str, gradient: Moments, batch_size: int, *, eta: float = 0.1,
               theta: float = 0.1, nu: float = 0.1, products: Moments | None = None) -> dict:
  """The test's statistics and proposed batch size (float32 scalars).

  `gradient`: the micro-batch-averaged `moments` of the per-example gradients; `products`:
  those of <u_i, g> (`inner_products` along g = gradient.mean), needed by the
  INNER_PRODUCT_TESTS. Returns {'variance': sum_j Var_i(u_ij), 'grad_sq_norm': ||g||^2,
  'inner_product_variance': Var_i(<u_i, g>) (0 when not needed), 'proposed': the test's size
  before rounding and capping (inf or NaN where ||g|| = 0; `next_batch_size` handles both)}.
  """
  if test not in TESTS:
    raise ValueError(f"batch-size test {test!r} is not one of {TESTS}")
  per_coordinate = variance(gradient, batch_size)
  total = _sum(per_coordinate)
  grad_sq = _sum(jax.tree.map(jnp.square, gradient.mean))
  ip_variance = jnp.zeros((), jnp.float32)
  if test in INNER_PRODUCT_TESTS:
    if products is None:
      raise ValueError(f"the {test!r} test needs the moments of the inner products <u_i, g>")
    ip_variance = variance(products, batch_size)
  norm = total / (eta**2 * grad_sq)
  inner = ip_variance / (theta**2 * grad_sq**2)
  orthogonal = jnp.maximum(total - ip_variance / grad_sq, 0.0) / (nu**2 * grad_sq)
  if test == "coordinate":
    worst = [jnp.max(jnp.where(v > 0, v / (eta**2 * jnp.square(g)), 0.0))
             for v, g in zip(jax.tree.leaves(per_coordinate), jax.tree.leaves(gradient.mean))]
    proposed = jnp.max(jnp.stack(worst))
  else:
    proposed = {"norm": norm, "inner_product": inner, "orthogonality": orthogonal,
                "augmented_inner_product": jnp.maximum(inner, orthogonal)}[test]
  as_float = lambda x: jnp.asarray(x, jnp.float32)
  return {"variance": as_float(total), "grad_sq_norm": as_float(grad_sq),
          "inner_product_variance": as_float(ip_variance), "proposed": as_float(proposed)}


def next_batch_size(current, proposed, max_batch_size: int) -> jax.Array:
  """b_{k+1} = min(max(b_k, ceil(proposed)), max_batch_size), int32: the batch never shrinks
  and never passes the cap; a NaN proposal (0/0 at g = 0) keeps b_k, +inf gives the cap."""
  proposed = jnp.where(jnp.isnan(proposed), 0.0, proposed)
  wanted = jnp.minimum(jnp.ceil(proposed), max_batch_size).astype(jnp.int32)
  return jnp.minimum(jnp.maximum(jnp.asarray(current, jnp.int32), wanted), max_batch_size)
