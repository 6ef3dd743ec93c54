"""Learning-rate rules for a change of batch size: linear, square root, none."""
import math

RULES = ("linear", "sqrt", "none")


def scale_learning_rate(base_lr: float, base_batch: int, batch: int, rule: str = "linear") -> float:
  """The learning rate at `batch` for a `base_lr` tuned at `base_batch`.

    linear: lr = base_lr * B / B0          (Goyal et al. 2017, SGD; with warmup)
    sqrt:   lr = base_lr * sqrt(B / B0)    (Krizhevsky 2014; You et al. 2020 for LAMB)
    none:   lr = base_lr                   (the rule of a fixed learning rate)
  """
  if rule not in RULES:
    raise ValueError(f"rule={rule!r} is not one of {RULES}")
  for name, value in (("base_batch", base_batch), ("batch", batch)):
    if value <= 0:
      raise ValueError(f"{name}={value!r} must be positive")
  ratio = batch / base_batch
  if rule == "linear":
    return base_lr * ratio
  if rule == "sqrt":
    return base_lr * math.sqrt(ratio)
  return base_lr
