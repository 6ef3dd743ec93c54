"""Learning-rate schedules used by the large-batch papers, built from optax pieces.

Every schedule starts with a linear warmup from 0 to the peak learning rate over
`warmup_steps`, then decays to `end_value` at `total_steps`:
  cosine:     optax.warmup_cosine_decay_schedule (Goyal et al. 2017 style warmup + cosine).
  linear:     linear decay, as in BERT / LAMB (You et al. 2020, Sec. 4).
  polynomial: (1 - t/T)^power decay, power 2 in the MLPerf LARS reference.
  constant:   the peak value after warmup.
"""
import optax

SCHEDULES = ("constant", "cosine", "linear", "polynomial")


def warmup_then(
    decay: str,
    peak_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    end_value: float = 0.0,
    power: float = 2.0,
) -> optax.Schedule:
  """Linear warmup 0 -> peak over `warmup_steps`, then `decay` to `end_value` at `total_steps`."""
  if decay not in SCHEDULES:
    raise ValueError(f"schedule={decay!r} is not one of {SCHEDULES}")
  if not 0 <= warmup_steps <= total_steps:
    raise ValueError(f"warmup_steps={warmup_steps} must lie in [0, total_steps={total_steps}]")
  decay_steps = max(total_steps - warmup_steps, 1)
  if decay == "cosine":
    after = optax.cosine_decay_schedule(peak_value, decay_steps, alpha=end_value / peak_value)
  elif decay == "linear":
    after = optax.linear_schedule(peak_value, end_value, decay_steps)
  elif decay == "polynomial":
    after = optax.polynomial_schedule(peak_value, end_value, power, decay_steps)
  else:
    after = optax.constant_schedule(peak_value)
  if warmup_steps == 0:
    return after
  warmup = optax.linear_schedule(0.0, peak_value, warmup_steps)
  return optax.join_schedules([warmup, after], [warmup_steps])
