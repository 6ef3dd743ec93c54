"""Learning-rate rules for a change of batch size: linear, square root, none; curvature limits."""
import math

RULES = ("linear", "sqrt", "none")
_EXPONENTS = {"linear": 1.0, "sqrt": 0.5, "none": 0.0}


def _check_rule(rule: str) -> None:
  if rule not in RULES:
    raise ValueError(f"rule={rule!r} is not one of {RULES}")


def scale_learning_rate(base_lr: float, base_batch: int, batch: int, rule: str = "linear",
                        max_lr: float | None = None) -> float:
  """The learning rate at `batch` for a `base_lr` tuned at `base_batch`.

    linear: lr = base_lr * B / B0          (Goyal et al. 2017, SGD; with warmup)
    sqrt:   lr = base_lr * sqrt(B / B0)    (Krizhevsky 2014; You et al. 2020 for LAMB)
    none:   lr = base_lr                   (the rule of a fixed learning rate)

  Granziol, Zohren & Roberts (2022) derive linear for SGD and sqrt for Adam from the batch
  Hessian's outlier eigenvalue, in the regime where its 1/B noise term dominates; past it the
  full-data curvature caps the learning rate. `max_lr` (e.g. `max_learning_rate` of
  lambda_max of the full-data Hessian) is that cap: lr = min(rule, max_lr).
  """
  _check_rule(rule)
  for name, value in (("base_batch", base_batch), ("batch", batch)):
    if value <= 0:
      raise ValueError(f"{name}={value!r} must be positive")
  ratio = batch / base_batch
  if rule == "linear":
    lr = base_lr * ratio
  elif rule == "sqrt":
    lr = base_lr * math.sqrt(ratio)
  else:
    lr = base_lr
  return lr if max_lr is None else min(lr, max_lr)


def max_learning_rate(sharpness: float, momentum: float = 0.0, ema: bool = False) -> float:
  """The largest learning rate at which gradient descent is stable on a quadratic of curvature
  `sharpness` (lambda_max of the Hessian the step sees; for Adam, of the preconditioned one):

    plain:                 2 / lambda                 (Granziol et al. 2022: lr < 2 / lambda')
    heavy ball, m = mu m + g:            2 (1 + mu) / lambda
    EMA momentum, m = mu m + (1 - mu) g: 2 (1 + mu) / ((1 - mu) lambda)
                                         (Adam's first moment; Cohen et al. 2022)

  from the characteristic roots of the update on each eigen-direction. With lambda the batch
  Hessian's lambda_max(H_B) ~ lambda_max(H) + c / B, it grows linearly in B, then saturates.
  """
  if not sharpness > 0:
    raise ValueError(f"sharpness={sharpness!r} must be positive (a direction of positive "
                     "curvature bounds the step)")
  if not 0 <= momentum < 1:
    raise ValueError(f"momentum={momentum!r} must be in [0, 1)")
  limit = 2 * (1 + momentum) / sharpness
  return limit / (1 - momentum) if ema else limit


def transfer_by_curvature(base_lr: float, base_sharpness: float, sharpness: float,
                          rule: str = "linear") -> float:
  """The learning rate that keeps the step's stability margin when lambda_max of the batch
  Hessian moves from `base_sharpness` (at the tuned batch) to `sharpness` (at the new one):

    lr = base_lr * (lambda_0 / lambda) ** p,   p = 1 (linear: SGD), 1/2 (sqrt: Adam), 0 (none).

  Where lambda ~ c / B (noise-dominated) this is `scale_learning_rate`'s rule; where lambda
  has reached the full-data value it stays put (Granziol et al. 2022).
  """
  _check_rule(rule)
  for name, value in (("base_sharpness", base_sharpness), ("sharpness", sharpness)):
    if not value > 0:
      raise ValueError(f"{name}={value!r} must be positive")
  return base_lr * (base_sharpness / sharpness) ** _EXPONENTS[rule]
