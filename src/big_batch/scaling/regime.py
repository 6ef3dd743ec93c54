"""Regime adaptation (Hoffer, Hubara & Soudry 2017, "Train longer, generalize better", Sec. 5).

A training regime is a plain dict measured in epochs, e.g. a piecewise-constant schedule
  {'epochs': 90, 'boundaries': [30, 60], 'values': [0.1, 0.01, 0.001]}:
'epochs' is the length of the run, 'boundaries' the epochs where the learning rate changes,
and any other key ending in '_epochs' (e.g. 'warmup_epochs') is an epoch count too. Every
other key ('values', ...) is not measured in epochs and is left as it is.
"""
import numbers
from typing import Any, Mapping


def _check_batch(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
    raise ValueError(f"{name}={value!r} must be a positive integer")


def adaptation_factor(base_batch: int, batch: int) -> int:
  """ceil(B / B0): how many times longer (in epochs) a run at batch B trains than at B0.

  At B = ceil(B/B0) * B0 an epoch has ceil(B/B0) times fewer updates; multiplying the epochs
  by that factor restores the small-batch number of updates (Hoffer et al. 2017, Sec. 5).
  For B <= B0 the factor is 1.
  """
  _check_batch("base_batch", base_batch)
  _check_batch("batch", batch)
  return -(-batch // base_batch)  # integer ceil: exact for any batch size, unlike float division


def _is_epoch_count(key: str) -> bool:
  return key in ("epochs", "boundaries") or key.endswith("_epochs")


def regime_adaptation(schedule: Mapping[str, Any], base_batch: int, batch: int) -> dict:
  """The regime at batch B that makes as many updates as `schedule` does at batch B0.

  Every epoch count e (the run length, each boundary, each '*_epochs' key) becomes
    e * ceil(B / B0)     (Hoffer et al. 2017, Sec. 5 "regime adaptation"),
  as `epochs *= ceil(batch_size / mini_batch_size)` in their code. Returns a new dict.
  """
  if "epochs" not in schedule:
    raise ValueError(f"schedule needs an 'epochs' entry, got keys {sorted(schedule)}")
  factor = adaptation_factor(base_batch, batch)

  def adapt(key, value):
    if not _is_epoch_count(key):
      return value
    if isinstance(value, (list, tuple)):
      return type(value)(e * factor for e in value)
    return value * factor

  return {key: adapt(key, value) for key, value in schedule.items()}
