"""Warmup + decay schedules of big_batch.optim.schedules against their closed forms."""
import math

import ml_collections
import numpy as np
import pytest

from big_batch import optim
from big_batch.optim import schedules

PEAK, END, WARMUP, TOTAL = 2.0, 0.02, 10, 110


def _closed_form(decay, step, warmup=WARMUP, power=2.0):
  """Linear warmup 0 -> PEAK over `warmup` steps, then `decay` to END at TOTAL (held after)."""
  if step < warmup:
    return PEAK * step / warmup
  tau = min((step - warmup) / (TOTAL - warmup), 1.0)
  return {
      "constant": PEAK,
      "linear": PEAK + (END - PEAK) * tau,  # BERT / LAMB
      "cosine": END + (PEAK - END) * (1 + math.cos(math.pi * tau)) / 2,
      "polynomial": END + (PEAK - END) * (1 - tau) ** power,  # MLPerf LARS, power 2
  }[decay]


@pytest.mark.parametrize("decay", schedules.SCHEDULES)
def test_warmup_then_decay_matches_closed_form(decay):
  schedule = schedules.warmup_then(decay, PEAK, TOTAL, warmup_steps=WARMUP, end_value=END)
  # step 0, mid-warmup, end of warmup, mid-decay, end, after the end
  for step in (0, 5, WARMUP, 35, 60, TOTAL - 1, TOTAL, TOTAL + 40):
    np.testing.assert_allclose(schedule(step), _closed_form(decay, step), rtol=1e-6, atol=1e-7,
                               err_msg=f"{decay} at step {step}")


def test_schedule_corners():
  polynomial = schedules.warmup_then("polynomial", PEAK, TOTAL, WARMUP, END)
  assert float(polynomial(0)) == 0.0
  np.testing.assert_allclose(polynomial(WARMUP), PEAK, rtol=1e-7)
  np.testing.assert_allclose(polynomial(TOTAL), END, rtol=1e-6)
  np.testing.assert_allclose(polynomial(60), END + (PEAK - END) / 4, rtol=1e-6)  # (1 - 1/2)^2


@pytest.mark.parametrize("decay", ["cosine", "linear", "polynomial"])
def test_without_warmup_starts_at_peak(decay):
  schedule = schedules.warmup_then(decay, PEAK, TOTAL, warmup_steps=0, end_value=END, power=3.0)
  for step in (0, 27, TOTAL):
    np.testing.assert_allclose(schedule(step), _closed_form(decay, step, warmup=0, power=3.0),
                               rtol=1e-6, atol=1e-7)


def test_invalid_arguments_are_rejected():
  with pytest.raises(ValueError, match="schedule='step'"):
    schedules.warmup_then("step", PEAK, TOTAL)
  with pytest.raises(ValueError, match="warmup_steps=200"):
    schedules.warmup_then("cosine", PEAK, TOTAL, warmup_steps=200)


def test_build_reads_the_schedule_fields_of_the_optimizer_config():
  config = ml_collections.ConfigDict(dict(name="lars", learning_rate=PEAK, schedule="polynomial",
                                          warmup_steps=WARMUP, end_value=END, power=2.0))
  schedule = optim.build(config, TOTAL).learning_rate
  for step in (5, 60, TOTAL):
    np.testing.assert_allclose(schedule(step), _closed_form("polynomial", step), rtol=1e-6)
  constant = optim.build(ml_collections.ConfigDict(dict(name="sgd", learning_rate=0.3)),
                         TOTAL).learning_rate
  np.testing.assert_allclose([constant(0), constant(TOTAL)], [0.3, 0.3], rtol=1e-7)
