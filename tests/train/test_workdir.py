"""Rerunning into a workdir: a changed config must not silently mix runs; every config is kept."""
import json
import os

import pytest

from big_batch import train
from big_batch.train import workdir as workdir_lib


def test_changed_learning_rate_is_refused_unless_allowed_and_then_recorded(quick_config,
                                                                          finished_workdir,
                                                                          capsys):
  tmp_path = finished_workdir
  before = {p: p.read_bytes() for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()}
  quick_config.num_steps = 80
  quick_config.optimizer.learning_rate = 0.02
  with pytest.raises(ValueError, match=r"this workdir's checkpoint \(step 60\) was trained with "
                                       r"another config: config.optimizer.learning_rate: 0.01 -> "
                                       r"0.02\. Use a new --workdir, or pass "
                                       r"--allow_config_change"):
    train.run(quick_config, str(tmp_path))
  after = {p: p.read_bytes() for p in (tmp_path / "checkpoints").rglob("*") if p.is_file()}
  assert after == before  # Nothing written.
  assert json.loads((tmp_path / "config.json").read_text())["optimizer"]["learning_rate"] == 0.01

  summary = train.run(quick_config, str(tmp_path), allow_config_change=True)
  assert "Resumed from the checkpoint at step 60" in capsys.readouterr().out
  assert summary["final_step"] == 80
  assert json.loads((tmp_path / "config.json").read_text())["optimizer"]["learning_rate"] == 0.02
  history = [json.loads((tmp_path / "config_history" / n).read_text())
             for n in sorted(os.listdir(tmp_path / "config_history"))]
  assert [h["run"] for h in history] == [0, 1]
  assert history[0]["config"]["optimizer"]["learning_rate"] == 0.01
  assert history[1]["changed"] == {"num_steps": {"old": 60, "new": 80},
                                   "optimizer.learning_rate": {"old": 0.01, "new": 0.02}}
  assert history[1]["start_step"] == 60


def test_changed_batch_size_is_refused(quick_config, finished_workdir):
  quick_config.batch.size = 256
  quick_config.num_steps = 80
  with pytest.raises(ValueError, match=r"config.batch.size: 128 -> 256"):
    train.run(quick_config, str(finished_workdir))


@pytest.mark.parametrize("path, safe", [
    ("num_steps", True), ("evals.test.every", True), ("evals.train.split", True),
    ("data.data_dir", True), ("log_every", True), ("batch.size", False), ("seed", False),
    ("optimizer.learning_rate", False), ("data.name", False), ("evalsx", False),
])
def test_resume_safe_fields(path, safe):
  assert workdir_lib.is_resume_safe(path) == safe


def test_differences_of_nested_records():
  old = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "e": None}
  new = {"a": 1, "b": {"c": [1, 3], "f": 2}, "e": None}
  assert workdir_lib.differences(old, new) == {"b.c": ([1, 2], [1, 3]), "b.d": ("x", None),
                                               "b.f": (None, 2)}
