"""Checks a config before anything compiles; every error names the field and its value."""
import tensorflow_datasets as tfds

from big_batch import models, optim, tasks
from big_batch.data.datasets import OFFLINE_BUILDERS
from big_batch.optim.schedules import SCHEDULES
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel.sharding import STRATEGIES


def _positive(value, field):
  if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
    raise ValueError(f"config.{field}={value!r} must be a positive number")


def _one_of(value, choices, field):
  if value not in choices:
    raise ValueError(f"config.{field}={value!r} is not one of {sorted(choices)}")


def validate(config, num_devices: int) -> None:
  """Raises ValueError for the first bad field of `config` on a machine with `num_devices`."""
  _one_of(config.task, tasks.TASKS, "task")
  _one_of(config.model.name, models.CLASSIFIERS, "model.name")
  _one_of(config.optimizer.name, optim.OPTIMIZERS, "optimizer.name")
  _one_of(config.optimizer.get("schedule", "constant"), SCHEDULES, "optimizer.schedule")
  _one_of(config.get("sharding", "replicated"), STRATEGIES, "sharding")
  if config.data.name not in OFFLINE_BUILDERS:
    try:
      tfds.builder_cls(config.data.name)
    except tfds.core.registered.DatasetNotFoundError:
      raise ValueError(f"config.data.name={config.data.name!r} is neither an offline data set "
                       f"{sorted(OFFLINE_BUILDERS)} nor a tfds data set") from None
  _positive(config.optimizer.learning_rate, "optimizer.learning_rate")
  _positive(config.batch.size, "batch.size")
  _positive(config.batch.eval_size, "batch.eval_size")
  if (config.get("num_steps") is None) == (config.get("num_epochs") is None):
    raise ValueError(f"set exactly one of config.num_steps={config.get('num_steps')!r} and "
                     f"config.num_epochs={config.get('num_epochs')!r}")
  if config.get("num_steps") is not None:
    _positive(config.num_steps, "num_steps")
  else:
    _positive(config.num_epochs, "num_epochs")
  for field in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
    _positive(config[field], field)
  sizes = mesh_lib.axis_sizes(config.mesh, num_devices)
  shards = sizes["data"] * sizes["fsdp"]
  for field in ("size", "eval_size"):
    if config.batch[field] % shards:
      raise ValueError(f"config.batch.{field}={config.batch[field]} is not divisible by the "
                       f"{shards} devices of mesh axes ('data', 'fsdp')")
