"""Bad configs fail before anything is built, with the field and the value in the message; a
field that nothing reads is an error too."""
import os

import pytest

from big_batch import train
from conftest import run_main


@pytest.mark.parametrize("field, value, message", [
    ("optimizer.name", "adamx", "config.optimizer.name='adamx' is not one of"),
    ("model.name", "resnet9000", "config.model.name='resnet9000' is not one of"),
    ("data.name", "no_such_data", "config.data.name='no_such_data' is neither"),
    ("data.variant", "huge", "config.data.variant='huge' is not a variant of 'mnist1d'"),
    ("task", "dance", "config.task='dance' is not one of"),
    ("optimizer.schedule", "zigzag", "config.optimizer.schedule='zigzag' is not one of"),
    ("optimizer.learning_rate", 0.0, "config.optimizer.learning_rate=0.0 must be a positive"),
    ("optimizer.learning_rate", -1.0, "config.optimizer.learning_rate=-1.0 must be a positive"),
    ("batch.size", 0, "config.batch.size=0 must be a positive"),
    ("batch.size", 100, "config.batch.size=100 is not divisible by the 8 devices"),
    ("evals.test.batch_size", 1001, "config.evals.test.batch_size=1001 is not divisible by the 8"),
    ("evals.test.every", 0, "config.evals.test.every=0 must be a positive integer"),
    ("num_steps", -5, "config.num_steps=-5 must be a positive"),
    ("num_epochs", 3.0, "set exactly one of config.num_steps, config.num_epochs, "
                        "config.num_examples; set: ['num_steps', 'num_epochs']"),
    ("sharding", "zero9", "config.sharding='zero9' is not one of"),
    ("model.norm", "layer", "config.model.norm='layer' is not one of"),
    ("model.ghost_batch_size", 16, "config.model.ghost_batch_size=16 needs config.model.norm="),
    ("batch.schedule", ((64, 0),), "config.batch.schedule=((64, 0),) must list increasing"),
    ("batch.schedule", ((0, 64),), "starts at 0 examples with 64, but config.batch.size is 128"),
])
def test_bad_field_is_named(quick_config, tmp_path, field, value, message):
  parent, _, leaf = field.rpartition(".")
  node = quick_config
  for part in filter(None, parent.split(".")):
    node = node[part]
  node[leaf] = value
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                     .replace(".", r"\.").replace("[", r"\[").replace("]", r"\]")):
    train.run(quick_config, str(tmp_path / "workdir"))
  assert not os.path.exists(tmp_path / "workdir")  # Nothing written for a rejected config.


@pytest.mark.parametrize("section, field, message", [
    ("model", "dropuot", r"config.model.dropuot: not a field here \(CNN1D takes \["),
    ("optimizer", "nesterov", r"config.optimizer.nesterov: not a field here \(optimizer 'adamw'"),
    ("data", "shuffle", r"config.data.shuffle: not a field here"),
    ("", "learning_rate", r"config.learning_rate: read by nothing in this configuration"),
    ("batch", "eval_size", r"config.batch.eval_size: read by nothing"),
    ("evals.test", "metric", r"config.evals.test.metric: not a field here"),
])
def test_a_field_that_nothing_reads_is_an_error(quick_config, tmp_path, section, field, message):
  node = quick_config
  for part in filter(None, section.split(".")):
    node = node[part]
  node[field] = 0.5
  with pytest.raises(ValueError, match=message):
    train.run(quick_config, str(tmp_path / "workdir"))
  assert not os.path.exists(tmp_path / "workdir")


def test_a_field_of_another_data_set_is_named(quick_config, tmp_path):
  quick_config.data.seq_len = 64
  with pytest.raises(ValueError, match=r"config.data.seq_len=64 is a field of the 'pydoc_text' "
                                       r"data set, not of 'mnist1d'"):
    train.run(quick_config, str(tmp_path))


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


def test_workdir_that_is_not_writable_says_so(quick_config):
  with pytest.raises(ValueError, match=r"--workdir='/proc/big_batch_run' is not writable"):
    train.run(quick_config, "/proc/big_batch_run")


@pytest.mark.parametrize("args, message", [
    (["--config.optimizer.learning_rat=0.1"], "learning_rat"),
    (["--config.batch.size=100"], "config.batch.size=100 is not divisible by the 8 devices"),
])
def test_command_line_config_errors_are_one_line(tmp_path, args, message):
  result = run_main(["--config", "configs/mnist1d_cnn.py:quick", "--workdir", str(tmp_path),
                     *args])
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
  assert "Traceback" not in result.stderr
  assert not os.listdir(tmp_path)


def test_bad_config_argument_is_one_line():
  result = run_main(["--config", "configs/mnist1d_cnn.py:fast", "--workdir", "/tmp/unused"])
  assert result.returncode == 2
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "'fast'" in lines[0], lines


def test_missing_config_file_is_named_at_once():
  result = run_main(["--config", "configs/no_such_config.py", "--workdir", "/tmp/unused"],
                    timeout=30)
  assert result.returncode == 2
  assert result.stderr.strip() == ("error: --config=configs/no_such_config.py: no such file (run "
                                   "from the directory the path is relative to, e.g. the "
                                   "repository root for configs/...)")
