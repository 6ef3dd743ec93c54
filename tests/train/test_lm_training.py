"""The LM job end to end: configs/lm_lasp.py:quick trains, and LASP-2 over a ('data', 'seq')
mesh follows the same loss curve as single-device attention with the batch split over 8 devices."""
import json
import math
import os

import pytest

from big_batch import train
from conftest import load_config


def lm_quick_config(data_dir, **mesh):
  config = load_config("lm_lasp", "quick")
  config.data.data_dir = data_dir
  config.log_every = 1  # The whole curve, step by step.
  config.mesh.update(mesh)
  return config


def train_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [r["train/loss"] for r in records if "train/loss" in r]


@pytest.fixture(scope="module")
def lasp2_run(data_dir, tmp_path_factory):
  """The quick config with LASP-2 on data=2 x seq=4: each device holds 64 of 256 positions."""
  config = lm_quick_config(data_dir, data=2, fsdp=1, seq=4)
  assert config.model.sequence_parallel == "lasp2"
  workdir = str(tmp_path_factory.mktemp("lasp2"))
  return train.run(config, workdir), train_losses(workdir)


def test_quick_lm_run_learns(lasp2_run):
  summary, losses = lasp2_run
  assert len(losses) == summary["final_step"] == 30
  assert losses[0] > 5.0  # Near ln 256 = 5.55 at initialization.
  assert losses[-1] < losses[0] - 1.0  # 30 steps learn byte frequencies at least.
  train_metrics, eval_metrics = summary["train"], summary["evals"]["validation"]
  assert train_metrics["bits_per_byte"] == pytest.approx(train_metrics["loss"] / math.log(2))
  assert eval_metrics["bits_per_byte"] == pytest.approx(eval_metrics["loss"] / math.log(2))
  assert eval_metrics["loss"] < 4.5 and 0.1 < eval_metrics["accuracy"] < 1.0


def test_lasp2_on_a_seq_mesh_follows_the_single_device_attention_curve(lasp2_run, data_dir,
                                                                       tmp_path):
  config = lm_quick_config(data_dir, data=8, fsdp=1, seq=1)
  config.model.sequence_parallel = "blockwise"
  summary = train.run(config, str(tmp_path))
  lasp2_summary, lasp2_losses = lasp2_run
  assert train_losses(tmp_path) == pytest.approx(lasp2_losses, rel=1e-5)
  assert summary["evals"]["validation"] == pytest.approx(lasp2_summary["evals"]["validation"],
                                                         rel=1e-5)


@pytest.mark.parametrize("field, value, message", [
    ("model.name", "cnn1d", "config.model.name='cnn1d' is not one of ['linear_attention_lm']"),
    ("model.sequence_parallel", "ring", "config.model.sequence_parallel='ring' is not one of"),
    ("model.sequence_parallel", "blockwise",
     "config.mesh.seq=8 shards the sequence, which config.model.sequence_parallel='blockwise'"),
])
def test_bad_lm_field_is_named(data_dir, tmp_path, field, value, message):
  config = lm_quick_config(data_dir)
  parent, _, leaf = field.rpartition(".")
  config[parent][leaf] = value
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
    train.run(config, str(tmp_path / "workdir"))
  assert not os.path.exists(tmp_path / "workdir")
