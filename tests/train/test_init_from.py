"""Warm starts from another run's checkpoint: named subtrees copied exactly, errors by path."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from big_batch import train
from big_batch.train import init_from
from big_batch.train.checkpoint import Checkpointer


def state_of(scale):
  return {"step": jnp.asarray(3, jnp.int32),
          "params": {"dense": {"kernel": jnp.full((4, 3), scale), "bias": jnp.full(3, scale)},
                     "head": {0: {"kernel": jnp.full((3, 2), 2 * scale)}}},
          "opt_state": {"mu": jnp.full(3, -scale)}}


def abstract_of(state):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state)


@pytest.fixture
def source(tmp_path):
  checkpointer = Checkpointer(tmp_path / "source" / "checkpoints", keep=2)
  checkpointer.save(7, state_of(1.0), {"step": 7})
  checkpointer.close()
  return str(tmp_path / "source")


def cfg(workdir, paths=("params",), step=None):
  return ml_collections.ConfigDict(dict(workdir=workdir, paths=paths, step=step))


def test_the_named_subtrees_come_from_the_other_run_the_rest_stays(source):
  fresh = state_of(0.0)
  warmed, step = init_from.warm_start(fresh, abstract_of(fresh), cfg(source))
  assert step == 7
  jax.tree.map(np.testing.assert_array_equal, warmed["params"], state_of(1.0)["params"])
  np.testing.assert_array_equal(warmed["opt_state"]["mu"], fresh["opt_state"]["mu"])
  assert warmed["params"]["dense"]["kernel"].sharding == abstract_of(fresh)["params"]["dense"][
      "kernel"].sharding


def test_a_path_may_come_from_another_path(source):
  fresh = state_of(0.0)
  warmed, _ = init_from.warm_start(fresh, abstract_of(fresh),
                                   cfg(source, paths={"params/head/0": "params/head/0"}))
  np.testing.assert_array_equal(warmed["params"]["head"][0]["kernel"], 2.0)
  np.testing.assert_array_equal(warmed["params"]["dense"]["kernel"], 0.0)  # Not requested.


@pytest.mark.parametrize("paths, step, message", [
    (("params/encoder",), None, r"'params/encoder' is not a path of this run's state"),
    ({"params": "weights"}, None, r"'weights' is not in the checkpoint at step 7"),
    (("params",), 3, r"config.init_from.step=3 is not a checkpoint of .*: \[7\]"),
])
def test_missing_paths_and_steps_are_named(source, paths, step, message):
  fresh = state_of(0.0)
  with pytest.raises(ValueError, match=message):
    init_from.warm_start(fresh, abstract_of(fresh), cfg(source, paths=paths, step=step))


def test_mismatched_leaves_are_named(source):
  other = state_of(0.0)
  other["params"]["dense"]["kernel"] = jnp.zeros((5, 3))
  with pytest.raises(ValueError, match=r"params/dense/kernel: checkpoint \(\(4, 3\), 'float32'\),"
                                       r" config \(\(5, 3\), 'float32'\)"):
    init_from.warm_start(other, abstract_of(other), cfg(source))


def test_a_run_warm_started_from_another_begins_where_it_ended(quick_config, tmp_path, capsys):
  quick_config.num_steps, quick_config.model.norm = 30, "none"  # No BN statistics to move.
  pretrained = train.run(quick_config, str(tmp_path / "a"))
  quick_config.init_from = dict(workdir=str(tmp_path / "a"), paths=("params",))
  quick_config.num_steps, quick_config.optimizer.warmup_steps = 1, 0
  quick_config.optimizer.learning_rate = 1e-9  # One step that barely moves the weights.
  warmed = train.run(quick_config, str(tmp_path / "b"))
  assert "Warm start: ('params',) from step 30" in capsys.readouterr().out
  assert warmed["evals"]["test"] == pytest.approx(pretrained["evals"]["test"], rel=1e-4)
