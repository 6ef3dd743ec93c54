"""How big each step's batch is, and how long the run is: the budget and the batch-size schedule.

Budget: exactly one of `config.num_steps` (steps), `config.num_epochs` (epochs of the training
split) or `config.num_examples` (examples seen). An examples budget E ends the run before the
step whose batch would pass E, so a constant batch B runs floor(E / B) steps.

Batch size (`config.batch`):
  size:      the global batch at the start;
  schedule:  later sizes by examples seen, [(examples, size), ...] with examples increasing:
             from the first step that starts with at least `examples` seen, batches have `size`
             rows (e.g. [(2000, 256)]: 64 until 2000 examples are seen, then 256);
  grid, grid_geometric: sizes a task decides itself (`Task.batch_size`) are rounded up to a
             multiple of `grid` (default: the devices the batch is split over), or with
             `grid_geometric` to grid * 2^k, so there is one compile per distinct size;
  max_micro_batch: rows per device per micro-batch, realized by gradient accumulation: a
             task-decided size beyond it is rounded so that the micro-batches fill it.
"""
import dataclasses
import functools
import math

from big_batch.checks import ConfigError

BUDGETS = ("num_steps", "num_epochs", "num_examples")


@dataclasses.dataclass(frozen=True)
class Segment:
  """Steps from `step` on start at stream position `position` with batches of `size` rows."""
  step: int
  position: int
  size: int


class BatchPlan:
  """The batch size of every step, where the run ends, and the rounding of task-chosen sizes."""

  def __init__(self, config, num_train_examples: int, shards: int):
    batch = config.batch
    self.num_train_examples = num_train_examples
    self.size = batch.size
    self.changes = [tuple(change) for change in batch.get("schedule") or ()]
    if self.changes and self.changes[0][0] == 0:
      self.changes = self.changes[1:]  # (0, size) restates batch.size (checked to equal it).
    self.grid = batch.get("grid") or shards * batch.get("accumulation_steps", 1)
    self.geometric = batch.get("grid_geometric", False)
    self.max_micro_batch = batch.get("max_micro_batch")
    self.shards = shards
    if config.get("num_steps") is not None:
      self.max_steps, self.max_examples = int(config.num_steps), None
    elif config.get("num_epochs") is not None:
      self.max_steps = None
      self.max_examples = int(config.num_epochs * num_train_examples)
    else:
      self.max_steps, self.max_examples = None, int(config.num_examples)
    self.sizes = (self.size, *(size for _, size in self.changes))
    too_big = [s for s in self.sizes if s > num_train_examples]
    if too_big:
      raise ConfigError(f"config.batch: a batch of {too_big[0]} rows exceeds the "
                        f"{num_train_examples} training examples")

  def scheduled_size(self, examples_seen: int) -> int:
    """The scheduled batch size of a step that starts with `examples_seen` examples seen."""
    size = self.size
    for threshold, later in self.changes:
      if examples_seen >= threshold:
        size = later
    return size

  def segments(self) -> list[Segment]:
    """The fixed schedule as constant-size segments (the last one unbounded)."""
    out, step, position, size = [], 0, 0, self.size
    for threshold, later in self.changes:
      out.append(Segment(step, position, size))
      steps = max(0, -(-(threshold - position) // size))
      step, position, size = step + steps, position + steps * size, later
    out.append(Segment(step, position, size))
    return out

  def position_at(self, step: int) -> int:
    """Examples drawn before `step` under the fixed schedule."""
    segment = [s for s in self.segments() if s.step <= step][-1]
    return segment.position + (step - segment.step) * segment.size

  def done(self, step: int, examples_seen: int, next_size: int) -> bool:
    """Whether the run ends before step `step` + 1 (one with `next_size` rows)."""
    if self.max_steps is not None:
      return step >= self.max_steps
    return examples_seen + next_size > self.max_examples

  def total_steps(self) -> int:
    """The steps of the run under the fixed schedule: exact for a fixed or scheduled size; an
    upper bound for sizes a task grows itself (the steps at the initial size)."""
    if self.max_steps is not None:
      return self.max_steps
    steps, seen = 0, 0
    for segment in self.segments():
      if self.done(steps, seen, segment.size):
        break
      following = [s for s in self.segments() if s.step > segment.step]
      limit = following[0].step - segment.step if following else math.inf
      fit = (self.max_examples - seen) // segment.size
      taken = int(min(limit, fit))
      steps, seen = steps + taken, seen + taken * segment.size
    return steps

  def total_examples(self) -> int:
    """Examples the run sees under the fixed schedule (its progress bar's end)."""
    if self.max_examples is not None:
      return self.max_examples
    return self.position_at(self.max_steps)

  def round(self, size: int) -> int:
    """A size a task asked for, rounded up to the grid (and to whole micro-batches of
    `max_micro_batch` rows per device), at most the largest such size the split holds."""
    return min(self._up(max(1, int(size))), self._largest)

  def _up(self, size: int) -> int:
    if self.geometric:
      size = self.grid * 2 ** max(0, math.ceil(math.log2(size / self.grid)))
    else:
      size = -(-size // self.grid) * self.grid
    cap = self.max_micro_batch
    if cap is not None and size // self.shards > cap:
      size = -(-(size // self.shards) // cap) * cap * self.shards
    return size

  @functools.cached_property
  def _largest(self) -> int:
    size = self.num_train_examples
    while self._up(size) != size:  # Grid sizes are the fixed points of rounding up.
      size -= 1
    return size


def check(section, top, shards: int) -> None:
  """Validates the budget (top-level) and the batch-size fields of `config.batch`; `shards`
  is the number of devices the batch is split over."""
  given = [name for name in BUDGETS if top.read(name, default=None) is not None]
  if len(given) != 1:
    raise ConfigError(f"set exactly one of {', '.join('config.' + b for b in BUDGETS)}; "
                      f"set: {given or 'none'}")
  top.positive(given[0], integer=given[0] != "num_epochs")
  size = section.positive("size", integer=True)
  schedule = section.read("schedule", default=())
  previous = -1
  for change in schedule:
    if (len(change) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                    for v in change)):
      section.fail("schedule", f"must be (examples seen, batch size) integer pairs; got "
                               f"{change!r}")
    examples, later = change
    if examples <= previous or later <= 0:
      section.fail("schedule", "must list increasing examples-seen thresholds and positive "
                               "sizes")
    if examples == 0 and later != size:
      section.fail("schedule", f"starts at 0 examples with {later}, but config.batch.size is "
                               f"{size}")
    previous = examples
  steps = section.node.get("accumulation_steps") or 1
  if section.node.get("max_micro_batch") is not None and steps != 1:
    section.fail("max_micro_batch", f"sets the micro-batches itself; it needs "
                                    f"config.batch.accumulation_steps=1, not {steps}")
  if section.read("grid", default=None) is not None:
    grid = section.positive("grid", integer=True)
    if grid % (shards * steps):
      section.fail("grid", f"must be a multiple of the {shards} devices of the batch axes times "
                           f"config.batch.accumulation_steps={steps}")
  section.boolean("grid_geometric", default=False)
  if section.read("pool_size", default=None) is not None:
    section.positive("pool_size", integer=True)
