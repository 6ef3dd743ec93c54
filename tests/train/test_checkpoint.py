"""Checkpoints: an unreadable one is set aside with one warning; one of another config's state
is an error that names the differing arrays and moves nothing."""
import os

import jax.numpy as jnp
import pytest

from big_batch import train
from big_batch.train.checkpoint import leaf_specs, structure_differences


def corrupt(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      if "manifest" in name or name.endswith(".zarray") or "ocdbt" in root:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")


def test_unreadable_latest_checkpoint_falls_back_with_one_warning(quick_config, finished_workdir,
                                                                  capfd):
  tmp_path = finished_workdir
  corrupt(tmp_path / "checkpoints" / "60" / "state")
  # A half-written (uncommitted) step 90 beside it is not a checkpoint at all.
  os.makedirs(tmp_path / "checkpoints" / "90.orbax-checkpoint-tmp")
  capfd.readouterr()
  quick_config.num_steps = 90
  summary = train.run(quick_config, str(tmp_path))
  out, err = capfd.readouterr()
  assert out.count("checkpoint at step 60 is unreadable") == 1
  assert "Resumed from the checkpoint at step 30" in out
  assert summary["final_step"] == 90
  assert os.path.isdir(tmp_path / "checkpoints_unreadable" / "60")  # Kept, not deleted.
  for flood in ("Event loop is closed", "Exception ignored", "Traceback"):
    assert flood not in out + err, flood


def test_a_checkpoint_of_another_state_is_an_error_and_nothing_moves(quick_config,
                                                                     finished_workdir):
  tmp_path = finished_workdir
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  config_before = (tmp_path / "config.json").read_text()
  quick_config.model.channels = (8, 8, 8)
  quick_config.optimizer.name = "sgd"
  with pytest.raises(ValueError) as error:
    train.run(quick_config, str(tmp_path))
  message = str(error.value)
  assert "the checkpoint at step 60" in message and "holds a different state" in message
  assert ("params/convs/0/kernel: checkpoint ((5, 1, 25), 'float32'), config ((5, 1, 8), "
          "'float32')") in message
  assert "config.model.channels: [25, 25, 25] -> [8, 8, 8]" in message
  assert "config.optimizer.name: 'adamw' -> 'sgd'" in message
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before
  assert not os.path.exists(tmp_path / "checkpoints_unreadable")
  assert (tmp_path / "config.json").read_text() == config_before  # The record is kept.


def test_structure_differences_name_each_path():
  saved = leaf_specs({"a": jnp.zeros((2, 3)), "b": jnp.zeros(4), "c": jnp.zeros(1)})
  expected = leaf_specs({"a": jnp.zeros((2, 4)), "b": jnp.zeros(4, jnp.int32),
                         "d": jnp.zeros(1)})
  assert structure_differences(saved, expected) == [
      "a: checkpoint ((2, 3), 'float32'), config ((2, 4), 'float32')",
      "b: checkpoint ((4,), 'float32'), config ((4,), 'int32')",
      "d: missing from the checkpoint (expected ((1,), 'float32'))",
      "c: only in the checkpoint ((1,), 'float32')"]
  assert structure_differences(saved, saved) == []
