"""Global batches for a device mesh, in an order that is a pure function of (seed, step).

Epoch e visits the training set in the permutation `np.random.default_rng((seed, e))`;
step s reads rows [i*B, (i+1)*B) of its epoch's permutation, i = s mod (N // B), so a resumed
run sees exactly the batches an uninterrupted one would. Each process reads only the rows its
devices hold; for data read from disk grain reads ahead on a thread.
"""
import functools

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding

from big_batch.data.datasets import Split


@functools.lru_cache(maxsize=2)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng((seed, epoch)).permutation(num_examples)


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int) -> np.ndarray:
  """The example indices of the global batch at `step` (each epoch drops its remainder)."""
  steps_per_epoch = num_examples // batch_size
  epoch, i = divmod(step, steps_per_epoch)
  return epoch_permutation(seed, epoch, num_examples)[i * batch_size:(i + 1) * batch_size]


def device_rows(sharding: NamedSharding, global_rows: int, devices) -> np.ndarray:
  """The rows of a global batch that `devices` hold, each once, in ascending order.

  That is the layout `jax.make_array_from_process_local_data` expects of a process's rows
  (its shards in ascending order of their first row), whatever the mesh's device order:
  on a mesh whose devices interleave processes, a process's rows are not one block.
  """
  indices = sharding.devices_indices_map((global_rows,))
  shard_rows = sharding.shard_shape((global_rows,))[0]
  starts = sorted({indices[device][0].start or 0 for device in devices})
  return np.concatenate([np.arange(start, start + shard_rows) for start in starts])


def process_rows(sharding: NamedSharding, global_rows: int) -> np.ndarray:
  """The rows of a global batch that this process reads: those its devices hold."""
  return device_rows(sharding, global_rows, sharding.addressable_devices)


def to_global(local_batch: dict, sharding: NamedSharding, global_rows: int) -> dict:
  """Host-local rows -> global jax.Arrays sharded over the mesh's batch axes."""
  return {
      k: jax.make_array_from_process_local_data(sharding, v, (global_rows, *v.shape[1:]))
      for k, v in local_batch.items()
  }


def train_batches(split: Split, *, batch_size: int, seed: int, start_step: int,
                  num_steps: int, sharding: NamedSharding, prefetch: int = 4):
  """Yields the global training batches of steps start_step .. num_steps-1.

  With `prefetch` > 0 grain reads that many batches ahead on a thread (for data read from
  disk); with 0 each batch is read when asked for, which suits in-memory data: the read is
  a gather of ~100 us, it overlaps the device's asynchronous step anyway, and a reader thread
  would only contend for the GIL and the cores.
  """
  if split.num_examples < batch_size:
    raise ValueError(f"batch_size={batch_size} exceeds the {split.num_examples} training "
                     "examples")
  rows = process_rows(sharding, batch_size)

  def read(step):
    idx = batch_indices(seed, step, split.num_examples, batch_size)[rows]
    return to_global(split.read(idx), sharding, batch_size)

  if prefetch == 0:
    return map(read, range(start_step, num_steps))
  dataset = grain.MapDataset.range(start_step, num_steps).map(read)
  return iter(dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)))


def eval_batches(split: Split, *, batch_size: int, sharding: NamedSharding):
  """Yields the whole split in order, in batches padded to `batch_size` with a 0/1 'mask'."""
  rows = process_rows(sharding, batch_size)
  for start in range(0, split.num_examples, batch_size):
    idx = np.arange(start, start + batch_size)
    mask = (idx < split.num_examples).astype(np.float32)
    batch = split.read(np.minimum(idx, split.num_examples - 1)[rows])
    batch["mask"] = mask[rows]
    yield to_global(batch, sharding, batch_size)
