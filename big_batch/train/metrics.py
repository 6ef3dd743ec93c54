"""Metric sinks of a run: `metrics.jsonl`, TensorBoard event files, and the progress line."""
import json
import math
import os
import time

import jax
import numpy as np
from tensorboardX import SummaryWriter


class MetricWriter:
  """Writes scalars to `<workdir>/metrics.jsonl` and TensorBoard events (process 0 only)."""

  def __init__(self, workdir: str, resume_step: int | None = None):
    self.active = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    if not self.active:
      return
    if resume_step is not None:
      self._truncate_after(resume_step)
    self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _truncate_after(self, step: int) -> None:
    """A resumed run rewrites the steps after its checkpoint: drop their old records."""
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      kept = [line for line in f if json.loads(line)["step"] <= step]
    with open(self.path, "w") as f:
      f.writelines(kept)

  def write(self, step: int, scalars: dict, prefix: str) -> None:
    if not self.active:
      return
    record = {"step": step, **{f"{prefix}/{k}": float(v) for k, v in scalars.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for k, v in scalars.items():
      self.tensorboard.add_scalar(f"{prefix}/{k}", float(v), step)

  def close(self) -> None:
    if self.active:
      self.tensorboard.close()


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


def mean_of(metrics: list[dict]) -> dict:
  """The mean of each scalar over a list of per-step metric dicts (one transfer to host)."""
  stacked = jax.device_get({k: [m[k] for m in metrics] for k in metrics[0]})
  return {k: float(np.mean(v)) for k, v in stacked.items()}


class Progress:
  """One line per log interval: step, examples/s and time left."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int):
    self.total_steps, self.batch_size = total_steps, batch_size
    self.last_step, self.last_time = start_step, time.perf_counter()

  def line(self, step: int, scalars: dict) -> str:
    now = time.perf_counter()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    eta = (self.total_steps - step) / rate if rate > 0 else math.inf
    shown = " ".join(f"{k}={scalars[k]:.4g}" for k in ("loss", "accuracy") if k in scalars)
    return (f"step {step}/{self.total_steps} {shown} "
            f"{rate * self.batch_size:,.0f} examples/s ETA {eta:.0f}s")

  def examples_per_second(self, steps: int, seconds: float) -> float:
    return steps * self.batch_size / max(seconds, 1e-9)
