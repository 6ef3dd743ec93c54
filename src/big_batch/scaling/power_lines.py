"""Power Lines (Bergsma et al. 2025): AdamW's timescale, and optimal and critical batch sizes.

AdamW's weights are an exponential moving average of its updates with coefficient eta*lambda
per step (Wang & Aitchison 2024), so over S = D / B steps its timescale as a fraction of the
run is

    tau = B / (eta lambda D)                   (B and D in the same unit: tokens, or examples)

At fixed model size N and data D the loss-optimal lambda keeps tau fixed, so lambda_opt is
proportional to B at a fixed eta. Across N and D, tau_opt falls as a power law in tokens per
parameter, and the loss-optimal and the critical batch grow as power laws in D alone:

    tau_opt = tau_ref (TPP / TPP_ref)^m_tau,   B_opt = B_ref (D / D_ref)^0.383,
    B_crit = B_ref (D / D_ref)^0.462.

The laws here go through a measured reference point (the prefactors are inputs: they depend on
the model family, the data and the units); the exponents are the paper's fits as quoted by
secondary sources (nanochat's `base_train.py` for B_opt, paper notes for m_tau and B_crit) and
are defaults to override. Fitting helpers: `fit_power_law` (log-log least squares with a
t-interval) and `fit_log_optimum` (the minimum of a sweep over a log-spaced grid).
"""
import math
from typing import NamedTuple

import numpy as np
from scipy import stats

TAU_EXPONENT = -0.527
B_OPT_EXPONENT = 0.383
B_CRIT_EXPONENT = 0.462


def _positive(**values) -> None:
  for name, value in values.items():
    if not np.all(np.asarray(value) > 0):
      raise ValueError(f"{name}={value!r} must be positive")


def timescale(batch, learning_rate, weight_decay, dataset_size):
  """tau = B / (eta lambda D): AdamW's EMA timescale as a fraction of the run (Wang &
  Aitchison 2024; Bergsma et al. 2025). lambda is optax.adamw's `weight_decay`, which
  is multiplied by the learning rate; eta the peak learning rate."""
  _positive(batch=batch, learning_rate=learning_rate, weight_decay=weight_decay,
            dataset_size=dataset_size)
  return batch / (learning_rate * weight_decay * dataset_size)


def weight_decay_for_timescale(tau, batch, learning_rate, dataset_size):
  """lambda = B / (eta tau D), the weight decay that gives timescale `tau`; at fixed eta and D
  it is proportional to B (Bergsma et al. 2025: lambda_opt grows linearly with B)."""
  _positive(tau=tau, batch=batch, learning_rate=learning_rate, dataset_size=dataset_size)
  return batch / (learning_rate * tau * dataset_size)


def tau_opt(tokens_per_param, reference_tau, reference_tokens_per_param,
            exponent=TAU_EXPONENT):
  """tau_opt(TPP) = tau_ref (TPP / TPP_ref)^m_tau, through a measured (TPP_ref, tau_ref)."""
  _positive(tokens_per_param=tokens_per_param, reference_tau=reference_tau,
            reference_tokens_per_param=reference_tokens_per_param)
  return reference_tau * (np.asarray(tokens_per_param) / reference_tokens_per_param) ** exponent


def b_opt(dataset_size, reference_batch, reference_size, exponent=B_OPT_EXPONENT):
  """B_opt(D) = B_ref (D / D_ref)^0.383: the loss-optimal batch for D tokens, independent of N."""
  _positive(dataset_size=dataset_size, reference_batch=reference_batch,
            reference_size=reference_size)
  return reference_batch * (np.asarray(dataset_size) / reference_size) ** exponent


def b_crit(dataset_size, reference_batch, reference_size, exponent=B_CRIT_EXPONENT):
  """B_crit(D) = B_ref (D / D_ref)^0.462: the batch past which data parallelism stops paying
  (it needs 2x the minimal tokens to reach the loss; McCandlish et al. 2018), D being those
  minimal tokens (D_min in the paper)."""
  _positive(dataset_size=dataset_size, reference_batch=reference_batch,
            reference_size=reference_size)
  return reference_batch * (np.asarray(dataset_size) / reference_size) ** exponent


class PowerLaw(NamedTuple):
  """y = prefactor * x^exponent fitted in log-log, with the exponent's standard error."""
  exponent: float
  exponent_se: float
  prefactor: float
  dof: int

  def interval(self, level: float = 0.95) -> tuple[float, float]:
    """The exponent's two-sided t-interval (nan with no residual degrees of freedom)."""
    if self.dof < 1:
      return (math.nan, math.nan)
    half = stats.t.ppf(0.5 + level / 2, self.dof) * self.exponent_se
    return (self.exponent - half, self.exponent + half)

  def __call__(self, x):
    return self.prefactor * np.asarray(x, np.float64) ** self.exponent


def fit_power_law(x, y) -> PowerLaw:
  """Least squares of log y = log a + k log x; k's standard error from the residuals."""
  _positive(x=x, y=y)
  lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
  if len(lx) < 2 or np.ptp(lx) == 0:
    raise ValueError("need two distinct x values or more")
  slope, intercept = np.polyfit(lx, ly, 1)
  dof = len(lx) - 2
  se = (math.sqrt(np.sum((ly - intercept - slope * lx) ** 2) / dof / np.sum((lx - lx.mean()) ** 2))
        if dof > 0 else math.nan)
  return PowerLaw(float(slope), se, float(math.exp(intercept)), dof)


class Optimum(NamedTuple):
  """The minimizer of a sweep: `value` and its interval; `resolved` False when the sweep does
  not bracket it (the best point is at an end of the grid, or the fitted parabola has no
  minimum inside it): then the best grid point and its neighbours."""
  value: float
  lower: float
  upper: float
  resolved: bool


def fit_log_optimum(x, loss, level: float = 0.95) -> Optimum:
  """The x minimizing `loss` over a log-spaced sweep: a parabola in log x through the points,
  its vertex exp(-b / 2a), and a delta-method t-interval on log x. Needs 4 points or more."""
  _positive(x=x)
  lx, loss = np.log(np.asarray(x, np.float64)), np.asarray(loss, np.float64)
  order = np.argsort(lx)
  lx, loss = lx[order], loss[order]
  if len(lx) < 4:
    raise ValueError(f"need 4 sweep points or more, got {len(lx)}")
  design = np.stack([lx ** 2, lx, np.ones_like(lx)], axis=1)
  coef, _, _, _ = np.linalg.lstsq(design, loss, rcond=None)
  a, b, _ = coef
  vertex = -b / (2 * a) if a > 0 else math.nan
  best = int(np.argmin(loss))
  if best in (0, len(lx) - 1) or not lx[0] <= vertex <= lx[-1]:
    return Optimum(float(math.exp(lx[best])), float(math.exp(lx[max(best - 1, 0)])),
                   float(math.exp(lx[min(best + 1, len(lx) - 1)])), False)
  dof = len(lx) - 3
  cov = np.sum((loss - design @ coef) ** 2) / dof * np.linalg.inv(design.T @ design)
  gradient = np.array([b / (2 * a ** 2), -1 / (2 * a), 0.0])
  half = stats.t.ppf(0.5 + level / 2, dof) * math.sqrt(gradient @ cov @ gradient)
  return Optimum(float(math.exp(vertex)), float(math.exp(vertex - half)),
                 float(math.exp(vertex + half)), True)
