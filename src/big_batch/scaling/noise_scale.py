"""The gradient noise scale and the critical batch size (McCandlish, Kaplan & Amodei 2018).

With G the full-data gradient and Sigma the per-example gradient covariance, a batch of B
examples has E|G_B|^2 = |G|^2 + tr(Sigma) / B, and

    B_simple = tr(Sigma) / |G|^2                                            (their Sec. 2.2)

approximates the noise scale B_noise = tr(H Sigma) / G^T H G, the batch beyond which a step
stops gaining from more examples: with the learning rate tuned at each B, the steps S and
examples E to reach a given loss trade off as

    S / S_min = 1 + B_noise / B,   E / E_min = 1 + B / B_noise,             (their Sec. 2.3)

i.e. (S / S_min - 1)(E / E_min - 1) = 1, and the critical batch B_crit = E_min / S_min equals
B_noise. Both |G|^2 and tr(Sigma) come unbiased from the gradient norms at two batch sizes
(their App. A), e.g. each device's share and the global batch of one step, so no extra
backward pass is needed; the ratio is taken of averages, not averaged.
"""
from typing import NamedTuple

import numpy as np


class NoiseScale(NamedTuple):
  """Unbiased estimates of |G|^2 and tr(Sigma); `b_simple` is their ratio."""
  grad_sq_norm: float
  trace_covariance: float

  @property
  def b_simple(self) -> float:
    return b_simple(self.trace_covariance, self.grad_sq_norm)


def b_simple(trace_covariance: float, grad_sq_norm: float) -> float:
  """B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, Sec. 2.2); inf where |G|^2 <= 0
  (the estimate of |G|^2 may come out negative when noise dominates)."""
  return float(trace_covariance / grad_sq_norm) if grad_sq_norm > 0 else float("inf")


def two_batch_estimate(small_sq_norm: float, big_sq_norm: float, small_batch: int,
                       big_batch: int, num_examples: int | None = None) -> NoiseScale:
  """|G|^2 and tr(Sigma) from mean squared gradient norms at two batch sizes (McCandlish et
  al. 2018, App. A):

      tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big),
      |G|^2     = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small) + tr(Sigma) / N.

  Sigma is the covariance of the N examples' gradients (normalized by N - 1). The last term is
  the finite-population correction for batches drawn without replacement, where
  E|G_B|^2 = |G|^2 + tr(Sigma) (1/B - 1/N); `num_examples` None is the infinite-data case.
  """
  if not 0 < small_batch < big_batch:
    raise ValueError(f"need 0 < small_batch < big_batch, got {small_batch} and {big_batch}")
  trace = (small_sq_norm - big_sq_norm) / (1 / small_batch - 1 / big_batch)
  grad = (big_batch * big_sq_norm - small_batch * small_sq_norm) / (big_batch - small_batch)
  if num_examples is not None:
    grad += trace / num_examples
  return NoiseScale(float(grad), float(trace))


def steps_ratio(batch, b_noise):
  """S / S_min = 1 + B_noise / B: steps to a target loss relative to the infinite batch."""
  return 1 + b_noise / np.asarray(batch, np.float64)


def examples_ratio(batch, b_noise):
  """E / E_min = 1 + B / B_noise: examples to a target loss relative to the smallest batch."""
  return 1 + np.asarray(batch, np.float64) / b_noise


class CriticalBatch(NamedTuple):
  """The fitted trade-off S(B) = S_min (1 + B_crit / B), with standard errors."""
  s_min: float
  b_crit: float
  s_min_se: float
  b_crit_se: float


def fit_critical_batch(batches, steps) -> CriticalBatch:
  """S_min and B_crit from measured steps to a target at several batch sizes: the hyperbola
  S = S_min + (S_min B_crit) / B of McCandlish et al. 2018, Sec. 2.3, fitted by least squares
  in relative error (weights 1/S: a count of steps is about equally uncertain in proportion
  at every batch size), B_crit = slope / intercept with its standard error by the delta
  method."""
  batches, steps = np.asarray(batches, np.float64), np.asarray(steps, np.float64)
  if len(batches) < 2:
    raise ValueError("need steps at two batch sizes or more")
  design = np.stack([np.ones_like(batches), 1 / batches], axis=1) / steps[:, None]
  target = np.ones_like(steps)
  (intercept, slope), _, _, _ = np.linalg.lstsq(design, target, rcond=None)
  dof = max(len(batches) - 2, 1)
  residual = np.sum((target - design @ np.array([intercept, slope])) ** 2) / dof
  cov = residual * np.linalg.inv(design.T @ design)
  b_crit = slope / intercept
  gradient = np.array([-slope / intercept ** 2, 1 / intercept])
  return CriticalBatch(float(intercept), float(b_crit), float(np.sqrt(cov[0, 0])),
                       float(np.sqrt(gradient @ cov @ gradient)))
