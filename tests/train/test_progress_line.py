"""The progress line's budget and time left (src/big_batch/train/metrics.py)."""
import time

from big_batch.train.metrics import ProgressLine


def test_an_examples_budget_shows_examples_of_the_total_and_their_eta(monkeypatch):
  clock = iter([0.0, 10.0])
  monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
  line = ProgressLine(1000, 10, 0).line(2, 200, {"loss": 0.5})
  # 200 examples in 10 s: the other 800 take 40 s.
  assert line == "step 2/10 loss=0.5 examples 200/1,000 20 examples/s ETA 40s"


def test_a_steps_budget_with_task_sizes_estimates_from_the_steps(monkeypatch):
  clock = iter([0.0, 10.0])
  monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
  line = ProgressLine(None, 100, 0, start_step=0).line(20, 5000, {"loss": 1.0})
  # 20 of 100 steps in 10 s: 80 steps left take 40 s; no total of examples is claimed.
  assert line == "step 20/100 loss=1 examples 5,000 500 examples/s ETA 40s"
