"""Which rows each step trains on: the batch size, the stream position, the task's selection.

The feed keeps two counters, both checkpointed with the run: `position`, the examples drawn
from the seeded stream (data/pipeline.py), and `examples_seen`, the rows trained on. They are
equal unless the task selects rows from a larger candidate pool (`Task.select`); selected
rows of weight 0 are padding and not counted. A step's
batch size is the fixed schedule's (train/batch_plan.py) or the task's own (`Task.batch_size`,
rounded to the grid). Batches of a plan known in advance are read ahead (`prefetch`) when the
data is read from disk.
"""
import dataclasses

import jax
import numpy as np

from big_batch.data import pipeline
from big_batch.train.batch_plan import BatchPlan


@dataclasses.dataclass
class Progress:
  """Where a run is: steps taken, stream position, examples trained on."""
  step: int = 0
  position: int = 0
  examples_seen: int = 0

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, record: dict) -> "Progress":
    return cls(**{k: int(record[k]) for k in ("step", "position", "examples_seen")})


class Feed:
  """The batches of one run, from `progress` on."""

  def __init__(self, task, plan: BatchPlan, split, *, seed: int, sharding, prefetch: int,
               pool_size: int | None, progress: Progress):
    self.task, self.plan, self.split, self.seed = task, plan, split, seed
    self.reader = pipeline.BatchReader(split, sharding)
    self.pool_size = pool_size
    self.progress = dataclasses.replace(progress)
    self.static = task.batch_size is None and task.select is None
    self._ahead = None
    if self.static and prefetch:
      self._ahead = pipeline.read_ahead(
          self.reader, self._static_indices,
          range(progress.step, plan.total_steps()), prefetch)

  def _static_indices(self, step: int) -> np.ndarray:
    position = self.plan.position_at(step)
    return pipeline.stream_indices(self.seed, position, self.plan.scheduled_size(position),
                                   self.split.num_examples)

  def next_size(self, state) -> int:
    """The size of the next step's batch (for a task-decided size, a sync with the device)."""
    if self.task.batch_size is None:
      return self.plan.scheduled_size(self.progress.examples_seen)
    return self.plan.round(int(jax.device_get(self.task.batch_size(state))))

  def next(self, state, size: int):
    """(state, batch) of the next step, which has `size` rows (from `next_size`)."""
    progress = self.progress
    if self._ahead is not None:
      batch, rows = next(self._ahead), size
    else:
      drawn = self.pool_size if self.task.select is not None and self.pool_size else size
      indices = pipeline.stream_indices(self.seed, progress.position, drawn,
                                        self.split.num_examples)
      extra = None
      if self.task.select is not None:
        state, picked = self.task.select(state, indices)
        if isinstance(picked, dict):
          picked = dict(picked)
          indices = np.asarray(picked.pop("index"))
          extra = picked
        else:
          indices = np.asarray(picked)
      rows = len(indices)
      if extra is not None and "weight" in extra:  # Rows of weight 0 are padding.
        rows = int(np.count_nonzero(np.asarray(extra["weight"])))
      batch, size = self.reader.read(indices, extra), drawn
    self.progress = Progress(progress.step + 1, progress.position + size,
                             progress.examples_seen + rows)
    return state, batch
