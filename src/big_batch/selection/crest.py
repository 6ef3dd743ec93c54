"""The pieces of CREST (Yang, Kang & Mirzasoleiman, ICML 2023, arXiv 2306.01244).

Mini-batch coresets from random subsets, trained on while a quadratic model of the loss stays
accurate. As the authors' code (BigML-CS-UCLA/CREST `trainers/crest_trainer.py`) does it:

  subsets     P class-balanced random subsets V_p of the candidate pool, ceil(rho N / C) rows
              per class (`class_balanced_subsets`);
  coresets    facility location per class of each V_p on g_i = softmax(f(x_i)) - e_{y_i}
              (`last_layer_gradients`, selection/facility_location.py), ceil(B / C) per class;
  model       F(delta) = L_0 + g^T delta + 1/2 delta^T diag(h) delta at the selection point,
              g and h bias-corrected AdaHessian moments of the gradient and of the Hutchinson
              diagonal v * (H v) (`hutchinson_moments`, `quadratic_value`);
  delta       delta <- delta - eta_t ghat_t at every step: w_t - w_0 for plain SGD;
  check       every T_1 steps, reselect when |L_true - F(delta)| > tau L_true, L_true the mean
              loss over the union of the V_p (`outside_region`);
  schedule    T_1 = ceil(||h||_0 / ||h|| * interval_mul), P = min(T_1 * batch_num_mul,
              steps_per_epoch) (`adapted_schedule`);
  drop        the losses of evaluated rows go to a ring buffer over `watch_interval` short
              epochs; every `drop_interval` the pool keeps rows with a loss above
              `drop_thresh` in any of them, and rows never evaluated (`rebuild_pool`).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from big_batch.selection import facility_location


def last_layer_gradients(logits, labels):
  """g_i = softmax(z_i) - e_{y_i}: the cross-entropy's gradient in the logits (CRAIG Sec. 4)."""
  logits = jnp.asarray(logits, jnp.float32)
  return jax.nn.softmax(logits) - jax.nn.one_hot(labels, logits.shape[-1])


def class_balanced_subsets(rng: np.random.Generator, labels: np.ndarray, pool: np.ndarray,
                           num_subsets: int, per_class: int) -> np.ndarray:
  """[num_subsets, C * per_class] row indices: per subset and class, `per_class` rows of the
  class drawn without replacement from the pool (`pool` a bool mask over all rows)."""
  classes = np.unique(labels)
  members = [np.flatnonzero((labels == c) & pool) for c in classes]
  for c, rows in zip(classes, members):
    if len(rows) < per_class:
      raise ValueError(f"class {c} has {len(rows)} rows in the pool, fewer than the "
                       f"{per_class} a random subset takes per class")
  return np.stack([np.concatenate([rng.choice(rows, per_class, replace=False)
                                   for rows in members]) for _ in range(num_subsets)])


def mini_batch_coresets(features: np.ndarray, labels: np.ndarray, subsets: np.ndarray,
                        per_class: int):
  """(rows, weights) of the union of one class-balanced coreset per random subset.

  `features[i]`, `labels[i]` belong to the row `subsets.ravel()[i]`; the weights are the
  cluster sizes renormalized to mean 1 over the union (CREST `_update_train_loader_and_weights`).
  """
  rows, gamma = [], []
  offset = 0
  for subset in subsets:
    part = slice(offset, offset + len(subset))
    chosen, weight = facility_location.class_balanced_coreset(features[part], labels[part],
                                                              per_class)
    rows.append(subset[chosen])
    gamma.append(weight)
    offset += len(subset)
  return np.concatenate(rows), facility_location.renormalize(np.concatenate(gamma))


def hutchinson_moments(moments, gradient, diagonal, beta1=0.9, beta2=0.999, eps=1e-4):
  """One AdaHessian moment update (Yao et al. 2021, Eq. 10; CREST `utils/gradients.py`).

  moments = (m, v, count); `diagonal` is a Hutchinson sample v * (H v) of diag(H). Returns
  (moments, g, h) with g = m / (1 - beta1^k) and h = sqrt(v / (1 - beta2^k)) + eps.
  """
  m, v, count = moments
  count = count + 1
  m = jax.tree.map(lambda a, b: beta1 * a + (1 - beta1) * b, m, gradient)
  v = jax.tree.map(lambda a, b: beta2 * a + (1 - beta2) * b * b, v, diagonal)
  g = jax.tree.map(lambda a: a / (1 - beta1 ** count), m)
  h = jax.tree.map(lambda a: jnp.sqrt(a / (1 - beta2 ** count)) + eps, v)
  return (m, v, count), g, h


def rademacher(rng: np.random.Generator, params):
  """A Rademacher (+-1) pytree shaped like `params`, drawn on the host (a threefry draw in
  the jitted step would cost more compile time than the step)."""
  return jax.tree.map(lambda p: (2 * rng.integers(0, 2, np.shape(p)) - 1).astype(np.float32),
                      params)


def hessian_diagonal_sample(loss, params, v):
  """(grad, v * (H v)) at `params`: Hutchinson's estimate of diag(H) for a Rademacher v."""
  grad, hv = jax.jvp(jax.grad(loss), (params,), (v,))
  return grad, jax.tree.map(lambda a, b: a * b, hv, v)


def quadratic_value(start_loss, gradient, curvature, delta):
  """F(delta) = L_0 + g^T delta + 1/2 delta^T diag(h) delta (CREST `_check_approx_error`)."""
  linear = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(gradient),
                                              jax.tree.leaves(delta)))
  quadratic = sum(jnp.vdot(h * d, d) for h, d in zip(jax.tree.leaves(curvature),
                                                      jax.tree.leaves(delta)))
  return start_loss + linear + 0.5 * quadratic


def outside_region(true_loss: float, approx_loss: float, tau: float) -> bool:
  """|L_true - F(delta)| > tau L_true: the quadratic model no longer holds; reselect."""
  return abs(true_loss - approx_loss) > tau * true_loss


def adapted_schedule(initial_norm: float, norm: float, interval_mul: float,
                     batch_num_mul: float, steps_per_epoch: int) -> tuple[int, int]:
  """(T_1, P) = (ceil(||h||_0 / ||h|| interval_mul), min(T_1 batch_num_mul, steps/epoch))."""
  interval = max(1, math.ceil(initial_norm / norm * interval_mul))
  return interval, int(min(interval * batch_num_mul, steps_per_epoch))


def rebuild_pool(watch: np.ndarray, labels: np.ndarray, pool: np.ndarray, per_class: int,
                 drop_thresh: float, min_size: int) -> np.ndarray:
  """The candidate pool without learned rows (CREST `_drop_learned_data`).

  `watch` [watch_interval, N] holds the losses recorded per short epoch (-1: not evaluated).
  Kept: rows with a loss above `drop_thresh` in any recorded epoch, and rows never evaluated;
  a class left with at most `per_class` rows keeps its previous pool, and the new pool is
  adopted only if it has more than `min_size` rows.
  """
  keep = (watch > drop_thresh).any(0) | (watch < 0).all(0)
  new = np.zeros_like(pool)
  for c in np.unique(labels):
    of_class = labels == c
    new |= of_class & (keep if (of_class & keep).sum() > per_class else pool)
  return new if new.sum() > min_size else pool
