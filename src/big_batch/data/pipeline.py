"""Global batches for a device mesh, in an order that is a pure function of (seed, examples seen).

The training stream is the concatenation of seeded epoch permutations: stream position p is
example `permutation(seed, p // N)[p mod N]`, with `np.random.default_rng((seed, e))` for
epoch e. A step whose batch has b rows reads stream positions [p, p + b), p the examples
drawn before it, so whatever the batch size (fixed, scheduled or decided by the task) a
resumed run reads exactly the rows an uninterrupted one would. A batch may straddle two
epochs. Each process reads only the rows its devices hold; for data read from disk grain
reads ahead on a thread.
"""
import functools
from typing import Callable

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding

from big_batch.data.datasets import Split


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng((seed, epoch)).permutation(num_examples)


def stream_indices(seed: int, position: int, size: int, num_examples: int) -> np.ndarray:
  """The example indices at stream positions [position, position + size)."""
  if size > num_examples:
    raise ValueError(f"a batch of {size} rows exceeds the {num_examples} training examples")
  positions = np.arange(position, position + size)
  epochs = positions // num_examples
  out = np.empty(size, np.int64)
  for epoch in np.unique(epochs):
    where = epochs == epoch
    out[where] = epoch_permutation(seed, int(epoch), num_examples)[positions[where]
                                                                    % num_examples]
  return out


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


class BatchReader:
  """Reads the examples at given indices of `split` as one global batch on `sharding`."""

  def __init__(self, split: Split, sharding: NamedSharding):
    self.split, self.sharding = split, sharding
    self._rows = functools.lru_cache(maxsize=16)(lambda n: process_rows(sharding, n))

  def read(self, indices: np.ndarray, extra: dict | None = None) -> dict:
    """The global batch of examples `indices` (all processes pass the same global indices);
    `extra` holds further per-row arrays of the same length (e.g. weights)."""
    rows = self._rows(len(indices))
    local = self.split.read(np.asarray(indices)[rows])
    for key, value in (extra or {}).items():
      local[key] = np.asarray(value)[rows]
    return to_global(local, self.sharding, len(indices))


def read_ahead(reader: BatchReader, indices_of: Callable[[int], np.ndarray], steps: range,
               prefetch: int):
  """Yields `reader.read(indices_of(step))` for each step, `prefetch` batches ahead on a thread.

  For batch plans known in advance (a fixed or scheduled size, no task selection). With
  prefetch 0 each batch is read when asked for, which suits in-memory data: the read is a
  gather of ~100 us that overlaps the device's asynchronous step anyway, and a reader thread
  would only contend for the GIL and the cores.
  """
  read = lambda step: reader.read(indices_of(step))
  if prefetch == 0:
    return map(read, steps)
  dataset = grain.MapDataset.range(steps.start, steps.stop).map(read)
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
