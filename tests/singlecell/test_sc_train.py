"""configs/singlecell_ba_scvi.py:quick through the trainer: data generated offline, both
optimizers stepping, the integration evaluator's KNI equal to kni_score recomputed on the
checkpointed weights."""
import json

import jax
import numpy as np
import orbax.checkpoint as ocp

from big_batch import train
from big_batch.data import datasets
from big_batch.singlecell import kni
from big_batch.singlecell import task as ba_scvi
from conftest import load_config


def test_quick_config_trains_and_reports_kni(data_dir, tmp_path):
  config = load_config("singlecell_ba_scvi", "quick")
  config.data.data_dir = data_dir
  summary = train.run(config, str(tmp_path / "run"))
  assert summary["final_step"] == 30
  final = summary["evals"]["test"]
  assert 0 <= final["kni"] <= final["pct_cells_with_diverse_knn"]
  metrics = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  losses = [m["train/loss"] for m in metrics if "train/loss" in m]
  assert losses[-1] < losses[0]
  assert all(m["train/disc_loss"] > 0 for m in metrics if "train/loss" in m)
  # The evaluator's KNI, recomputed from the last checkpoint's weights.
  data = datasets.load(config.data)
  test = data.split("test").read(np.arange(data.split("test").num_examples))
  state = ocp.StandardCheckpointer().restore(str(tmp_path / "run" / "checkpoints" / "30" /
                                                  "state"))
  z = ba_scvi.embedding(config, jax.tree.map(np.asarray, state["params"]), test["counts"], 4)
  again = kni.kni_score(z, test["study"], test["cell_type"], k=15)
  assert again["kni"] == final["kni"] and again["acc_knn"] == final["acc_knn"]
