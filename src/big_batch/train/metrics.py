"""Metric sinks of a run: `metrics.jsonl`, TensorBoard event files, and the progress line.

Everything is written through `etils.epath`, so a workdir may be local or on cloud storage
(`gs://...`). Cloud objects cannot be appended to: there, metrics.jsonl is rewritten whole
at each write, and TensorBoard event files are uploaded whole at each flush.
"""
import io
import json
import math
import time

import jax
import numpy as np
from etils import epath
from tensorboardX import SummaryWriter
from tensorboardX import record_writer


def is_remote(path) -> bool:
  return "://" in str(path)


class _EpathRecordWriter:
  """A tensorboardX record writer for any epath location: buffers, uploads whole on flush."""

  def __init__(self, path: str):
    self.path, self.buffer = epath.Path(path), io.BytesIO()

  def write(self, data: bytes) -> None:
    self.buffer.write(data)

  def flush(self) -> None:
    self.path.write_bytes(self.buffer.getvalue())

  def close(self) -> None:
    self.flush()


class _EpathRecordWriterFactory:
  def open(self, path):
    return _EpathRecordWriter(path)

  def directory_check(self, path):
    epath.Path(path).mkdir(parents=True, exist_ok=True)


# tensorboardX's own 'gs' writer needs google-cloud-storage; epath already reaches gs://.
record_writer.register_writer_factory("gs", _EpathRecordWriterFactory())


def read_jsonl(path) -> list[dict]:
  path = epath.Path(path)
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricWriter:
  """Writes scalars to `<workdir>/metrics.jsonl` and TensorBoard events (process 0 only).

  `resume_step`: the records after it (from a run that went past its last checkpoint, or
  that never checkpointed, for 0) are dropped, so a resumed run's curves have no duplicates.
  """

  def __init__(self, workdir, resume_step: int):
    self.active = jax.process_index() == 0
    self.path = epath.Path(workdir) / "metrics.jsonl"
    if not self.active:
      return
    self.remote = is_remote(self.path)
    kept = [r for r in read_jsonl(self.path) if r["step"] <= resume_step]
    self.lines = [json.dumps(r) + "\n" for r in kept]
    self.path.write_text("".join(self.lines))
    self.tensorboard = SummaryWriter(str(epath.Path(workdir) / "tensorboard"))

  def write(self, step: int, scalars: dict, prefix: str) -> None:
    if not self.active:
      return
    record = {"step": step, **{f"{prefix}/{k}": float(v) for k, v in scalars.items()}}
    line = json.dumps(record) + "\n"
    self.lines.append(line)
    if self.remote:
      self.path.write_text("".join(self.lines))
    else:
      with self.path.open("a") as f:
        f.write(line)
    for k, v in scalars.items():
      self.tensorboard.add_scalar(f"{prefix}/{k}", float(v), step)

  def close(self) -> None:
    if self.active:
      self.tensorboard.close()


def mean_of(metrics: list[dict]) -> dict:
  """The mean of each metric over a list of per-step metric dicts (one transfer to host).

  Scalars stay scalars; a metric with one value per member of a group (e.g. per worker) is
  averaged over the steps and reported per member as `<name>/<i>`.
  """
  stacked = jax.device_get({k: [m[k] for m in metrics] for k in metrics[0]})
  out = {}
  for key, values in stacked.items():
    mean = np.mean(np.asarray(values, np.float64), axis=0)
    if mean.ndim == 0:
      out[key] = float(mean)
    else:
      out.update({f"{key}/{i}": float(v) for i, v in enumerate(mean.reshape(-1))})
  return out


class ProgressLine:
  """One line per log interval: step, examples seen of the budget, examples/s, time left.

  `total_examples` None: the budget is in steps and the task decides the sizes, so the time
  left is estimated from the steps (`total_steps`) instead of the examples.
  """

  def __init__(self, total_examples: int | None, total_steps: int | None, start_examples: int,
               start_step: int = 0):
    self.total_examples, self.total_steps = total_examples, total_steps
    self.last_examples, self.last_time = start_examples, time.perf_counter()
    self.last_step = start_step

  def line(self, step: int, examples_seen: int, scalars: dict) -> str:
    now = time.perf_counter()
    seconds = max(now - self.last_time, 1e-9)
    rate = (examples_seen - self.last_examples) / seconds
    step_rate = (step - self.last_step) / seconds
    self.last_examples, self.last_time, self.last_step = examples_seen, now, step
    if self.total_examples is None:
      eta = (self.total_steps - step) / step_rate if step_rate > 0 else math.inf
      budget = ""
    else:
      eta = (self.total_examples - examples_seen) / rate if rate > 0 else math.inf
      budget = f"/{self.total_examples:,}"
    shown = " ".join(f"{k}={scalars[k]:.4g}" for k in ("loss", "accuracy") if k in scalars)
    total = f"/{self.total_steps}" if self.total_steps else ""
    return (f"step {step}{total} {shown} examples {examples_seen:,}{budget} "
            f"{rate:,.0f} examples/s ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = max(0, int(round(seconds)))
  if seconds < 120:
    return f"{seconds}s"
  if seconds < 7200:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
