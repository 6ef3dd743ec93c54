"""A thin wrapper over orbax's CheckpointManager: save, restore the latest good, keep the last K.

Each checkpoint holds two items: `state` (the task state's arrays, saved by every process for
its shards) and `trainer` (JSON: step, stream position, examples seen). Saves are
asynchronous (orbax writes in a background thread and commits atomically: a half-written
step stays a temporary directory and is never listed). The directory may be local or on
cloud storage (`gs://...`): orbax and tensorstore write both.

Restoring the latest checkpoint tells two failures apart:
- a checkpoint whose arrays do not match the state the config builds (other shapes, dtypes
  or paths) is an error naming the differing paths; nothing is moved or deleted: the
  checkpoints belong to another config (train/workdir.py compares the configs);
- a checkpoint that cannot be read or decoded is moved aside to
  `<directory>/../checkpoints_unreadable/` (kept, not deleted) and the previous step is
  tried. With several processes all must read a step for it to count; only process 0 moves.
"""
import contextlib
import gc
import os
import sys
import tempfile
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from big_batch.parallel.sharding import path_string


class StructureMismatchError(ValueError):
  """A checkpoint holds arrays that differ from the state the config builds."""


def _handlers():
  return {"state": ocp.StandardCheckpointHandler(), "trainer": ocp.JsonCheckpointHandler()}


def leaf_specs(tree) -> dict[str, tuple]:
  """'/'-joined path -> (shape, dtype name) of every array leaf (arrays or metadata)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {path_string(path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
          for path, leaf in flat}


def structure_differences(saved: dict, expected: dict, limit: int = 8) -> list[str]:
  """Lines naming the paths where two `leaf_specs` differ."""
  lines = [f"{p}: checkpoint {saved[p]}, config {expected[p]}"
           for p in sorted(saved.keys() & expected) if saved[p] != expected[p]]
  lines += [f"{p}: missing from the checkpoint (expected {expected[p]})"
            for p in sorted(expected.keys() - saved)]
  lines += [f"{p}: only in the checkpoint {saved[p]}" for p in sorted(saved.keys() - expected)]
  return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def _all_processes_agree(ok: bool) -> bool:
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok, np.int32))))


@contextlib.contextmanager
def _quiet_if_failing(drain_seconds: float = 1.0):
  """Holds back what is written to stderr (file descriptor 2) while the block runs.

  When orbax fails to read one array, it closes its event loop while tensorstore still
  completes the other reads; each completion then fails in one of tensorstore's threads with
  "Event loop is closed" and prints a traceback (tens of them) straight to descriptor 2. On
  failure they are let drain for `drain_seconds` and dropped, so the caller's one warning is
  what a user sees; on success whatever was held back is written out.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  held = tempfile.TemporaryFile()
  os.dup2(held.fileno(), 2)
  unraisable, sys.unraisablehook = sys.unraisablehook, lambda _: None
  failed = False
  try:
    yield
  except Exception:
    failed = True
    time.sleep(drain_seconds)
    gc.collect()
    raise
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    sys.unraisablehook = unraisable
    if not failed:
      held.seek(0)
      text = held.read()
      if text:
        os.write(2, text)
    held.close()


class Checkpointer:
  """Checkpoints of one run's train state under `directory` (a local path or gs://...)."""

  def __init__(self, directory, keep: int):
    self.directory = epath.Path(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             cleanup_tmp_directories=True),
        item_handlers=_handlers())

  def save(self, step: int, state, trainer: dict) -> None:
    """Starts writing `state` and the trainer record as `step`; returns once the arrays are
    copied off the devices."""
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    trainer=ocp.args.JsonSave(trainer)),
                      force=True)

  def restore_latest(self, abstract_state):
    """(step, state, trainer record) of the newest readable checkpoint, or (None, None, None).

    `abstract_state` holds jax.ShapeDtypeStructs with shardings: arrays land sharded.
    Raises StructureMismatchError if a readable checkpoint holds other arrays.
    """
    expected = leaf_specs(abstract_state)
    for step in sorted(self.manager.all_steps(), reverse=True):
      error, restored = None, None
      try:
        with _quiet_if_failing():
          saved = leaf_specs(self.manager.item_metadata(step)["state"].tree)
      except Exception as e:  # noqa: BLE001 -- unreadable metadata: a read error.
        error = e
      if error is None and saved != expected:
        raise StructureMismatchError(
            f"the checkpoint at step {step} in {self.directory} holds a different state than "
            "this config builds:\n  " + "\n  ".join(structure_differences(saved, expected)))
      if error is None:
        try:
          restored = self._read(step, abstract_state)
        except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint falls back.
          error = e
      if _all_processes_agree(error is None):
        return step, restored["state"], dict(restored["trainer"])
      self._set_aside(step, error)
    return None, None, None

  def _read(self, step, abstract_state):
    with _quiet_if_failing():
      return self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), trainer=ocp.args.JsonRestore()))

  def _set_aside(self, step: int, error) -> None:
    reason = (f"{type(error).__name__}: {str(error).splitlines()[0][:200]}" if error
              else "another process could not read it")
    aside = self.directory.parent / "checkpoints_unreadable" / str(step)
    if jax.process_index() == 0:
      suffix = 0
      while aside.exists():
        suffix += 1
        aside = self.directory.parent / "checkpoints_unreadable" / f"{step}.{suffix}"
      aside.parent.mkdir(parents=True, exist_ok=True)
      (self.directory / str(step)).rename(aside)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"big_batch_checkpoint_aside_{step}")
    self.manager.reload()
    if jax.process_index() == 0:
      print(f"WARNING: checkpoint at step {step} is unreadable ({reason}); moved it to {aside} "
            "and trying the previous one.", flush=True)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
