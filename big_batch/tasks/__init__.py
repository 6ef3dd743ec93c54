"""Tasks by name: what a train step computes. `build(config, data, tx, schedule) -> Task`."""
from big_batch.tasks import lm, supervised
from big_batch.tasks.common import Task

TASKS = {"supervised": supervised.build, "lm": lm.build}


def build(config, data, tx, schedule) -> Task:
  if config.task not in TASKS:
    raise ValueError(f"config.task={config.task!r} is not one of {sorted(TASKS)}")
  return TASKS[config.task](config, data, tx, schedule)
