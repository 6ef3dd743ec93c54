"""A thin wrapper over orbax's CheckpointManager: save, restore the latest good, keep the last K.

Saves are asynchronous (orbax writes in a background thread and commits atomically: a
half-written step stays a temporary directory and is never listed). A step directory that
orbax lists but cannot read is moved aside to `<directory>/../checkpoints_unreadable/` (kept,
not deleted), and the previous step is tried.
"""
import os
import shutil

import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
  """Checkpoints of one run's train state under `directory`."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             cleanup_tmp_directories=True))

  def save(self, step: int, state) -> None:
    """Starts writing `state` as `step`; returns once the arrays are copied off the devices."""
    self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore_latest(self, abstract_state):
    """(step, state) of the newest readable checkpoint, or (None, None) if there is none.

    `abstract_state` holds jax.ShapeDtypeStructs with shardings: arrays land sharded.
    """
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        return step, self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
      except Exception as error:  # noqa: BLE001 -- any unreadable checkpoint falls back.
        aside = self._move_aside(step)
        logging.warning("Checkpoint at step %d is unreadable (%s: %s); moved it to %s and "
                        "falling back to the previous one.", step, type(error).__name__,
                        str(error).splitlines()[0][:200], aside)
        print(f"WARNING: checkpoint at step {step} is unreadable; moved to {aside}; "
              "trying the previous one.", flush=True)
    return None, None

  def _move_aside(self, step: int) -> str:
    aside_root = os.path.join(os.path.dirname(self.directory), "checkpoints_unreadable")
    os.makedirs(aside_root, exist_ok=True)
    aside = os.path.join(aside_root, str(step))
    suffix = 0
    while os.path.exists(aside):
      suffix += 1
      aside = os.path.join(aside_root, f"{step}.{suffix}")
    shutil.move(os.path.join(self.directory, str(step)), aside)
    self.manager.reload()
    return aside

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
