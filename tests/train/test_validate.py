"""Bad configs fail before anything compiles, with the field and the value in the message."""
import os

import pytest

from big_batch import train
from conftest import run_main


@pytest.mark.parametrize("field, value, message", [
    ("optimizer.name", "adamx", "config.optimizer.name='adamx' is not one of"),
    ("model.name", "resnet9000", "config.model.name='resnet9000' is not one of"),
    ("data.name", "no_such_data", "config.data.name='no_such_data' is neither"),
    ("task", "dance", "config.task='dance' is not one of"),
    ("optimizer.schedule", "zigzag", "config.optimizer.schedule='zigzag' is not one of"),
    ("optimizer.learning_rate", 0.0, "config.optimizer.learning_rate=0.0 must be a positive"),
    ("optimizer.learning_rate", -1.0, "config.optimizer.learning_rate=-1.0 must be a positive"),
    ("batch.size", 0, "config.batch.size=0 must be a positive"),
    ("batch.size", 100, "config.batch.size=100 is not divisible by the 8 devices"),
    ("batch.eval_size", 1001, "config.batch.eval_size=1001 is not divisible by the 8 devices"),
    ("num_steps", -5, "config.num_steps=-5 must be a positive"),
    ("sharding", "zero9", "config.sharding='zero9' is not one of"),
])
def test_bad_field_is_named(quick_config, tmp_path, field, value, message):
  parent, _, leaf = field.rpartition(".")
  (quick_config[parent] if parent else quick_config)[leaf] = value
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
    train.run(quick_config, str(tmp_path / "workdir"))
  assert not os.path.exists(tmp_path / "workdir")  # Nothing written for a rejected config.


def test_mesh_that_does_not_match_the_devices(quick_config, tmp_path):
  quick_config.mesh.data = 3
  with pytest.raises(ValueError, match=r"config.mesh=.* has 3 devices but 8 are available"):
    train.run(quick_config, str(tmp_path))


def test_workdir_that_is_a_file(quick_config, tmp_path):
  path = tmp_path / "file"
  path.write_text("results of last week")
  with pytest.raises(ValueError, match="is a file, not a directory"):
    train.run(quick_config, str(path))
  assert path.read_text() == "results of last week"


def test_override_of_a_key_that_does_not_exist(tmp_path):
  result = run_main(["--config", "configs/mnist1d_cnn.py:quick", "--workdir", str(tmp_path),
                     "--config.optimizer.learning_rat=0.1"])
  assert result.returncode != 0
  assert "learning_rat" in result.stderr
  assert not os.listdir(tmp_path)


def test_bad_config_argument():
  result = run_main(["--config", "configs/mnist1d_cnn.py:fast", "--workdir", "/tmp/unused"])
  assert result.returncode != 0 and "'fast'" in result.stderr
