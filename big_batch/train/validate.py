"""Checks a config before anything compiles; every error names the field and its value."""
import tensorflow_datasets as tfds

from big_batch import models, optim, tasks
from big_batch.data.datasets import OFFLINE_BUILDERS
from big_batch.models.linear_attention_lm import SEQUENCE_PARALLEL
from big_batch.optim.schedules import SCHEDULES
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel.sharding import STRATEGIES
from big_batch.scaling.learning_rate import RULES as LR_SCALING_RULES


def _positive(value, field):
  if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
    raise ValueError(f"config.{field}={value!r} must be a positive number")


def _one_of(value, choices, field):
  if value not in choices:
    raise ValueError(f"config.{field}={value!r} is not one of {sorted(choices)}")


def validate(config, num_devices: int) -> None:
  """Raises ValueError for the first bad field of `config` on a machine with `num_devices`."""
  _one_of(config.task, tasks.TASKS, "task")
  _one_of(config.model.name,
          models.LANGUAGE_MODELS if config.task == "lm" else models.CLASSIFIERS, "model.name")
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
  _one_of(config.batch.get("lr_scaling", "none"), LR_SCALING_RULES, "batch.lr_scaling")
  _positive(config.batch.get("base_size", config.batch.size), "batch.base_size")
  sizes = mesh_lib.axis_sizes(config.mesh, num_devices)
  shards = sizes["data"] * sizes["fsdp"]
  for field in ("size", "eval_size"):
    if config.batch[field] % shards:
      raise ValueError(f"config.batch.{field}={config.batch[field]} is not divisible by the "
                       f"{shards} devices of mesh axes ('data', 'fsdp')")
  _validate_micro_batches(config, shards)
  if config.task == "lm":
    _validate_sequence_parallel(config, sizes["seq"])


def _validate_sequence_parallel(config, seq_shards: int) -> None:
  """Only LASP shards the sequence; on any other attention the `seq` devices would all
  compute the same thing (models/linear_attention_lm.py, parallel/lasp.py)."""
  impl = config.model.get("sequence_parallel", "blockwise")
  _one_of(impl, SEQUENCE_PARALLEL, "model.sequence_parallel")
  if seq_shards > 1 and impl not in ("lasp1", "lasp2"):
    raise ValueError(f"config.mesh.seq={seq_shards} shards the sequence, which "
                     f"config.model.sequence_parallel={impl!r} does not: use 'lasp1' or 'lasp2'")


def _validate_micro_batches(config, shards: int) -> None:
  """Each device splits its B/D rows into accumulation_steps equal micro-batches, and a
  ghost batch must not straddle two of them (tasks/accumulation.py)."""
  steps = config.batch.get("accumulation_steps", 1)
  if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
    raise ValueError(f"config.batch.accumulation_steps={steps!r} must be a positive integer")
  if config.batch.size % (shards * steps):
    raise ValueError(f"config.batch.size={config.batch.size} is not divisible by the {shards} "
                     f"devices of mesh axes ('data', 'fsdp') times "
                     f"config.batch.accumulation_steps={steps}")
  micro = config.batch.size // (shards * steps)
  ghost = config.model.get("ghost_batch_size")
  if config.model.get("norm") == "ghost" and ghost is not None and micro % ghost:
    raise ValueError(f"config.model.ghost_batch_size={ghost} does not divide the per-device "
                     f"micro-batch config.batch.size / (devices x accumulation_steps) = "
                     f"{config.batch.size} / ({shards} x {steps}) = {micro}")
