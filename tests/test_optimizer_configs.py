"""configs/mnist1d_lamb.py and configs/mnist1d_lars.py: the recipes their docstrings describe,
valid as shipped, and their `:quick` variants train (the full runs: test_config_results.py)."""
import pytest

from big_batch import optim, train
from big_batch.train.metrics import read_jsonl
from conftest import load_config

NAMES = ("mnist1d_lamb", "mnist1d_lars")


@pytest.mark.parametrize("name", NAMES)
def test_recipe_is_batch_4096_with_warmup_and_masks_excluding_biases_and_norms(name):
  config = load_config(name)
  train.validate(config, 1)
  assert config.data.variant == "large"
  assert config.batch.size == 4096 and config.batch.lr_scaling == "sqrt"
  assert 0 < config.optimizer.warmup_steps < 40000 * config.num_epochs // 4096
  assert config.optimizer.weight_decay > 0
  assert config.optimizer.weight_decay_mask == "exclude_bias_and_norm"
  assert config.optimizer.trust_ratio_mask == "exclude_bias_and_norm"
  peak = optim.peak_learning_rate(config.optimizer, config.batch)
  assert peak == pytest.approx(config.optimizer.learning_rate * (4096 / 64) ** 0.5)


@pytest.mark.parametrize("name", NAMES)
def test_quick_variant_trains(name, data_dir, tmp_path):
  """20 steps of batch 1024 on the standard variant: the training loss falls by a fifth from
  its first log (10 steps) to its last, and test accuracy is above twice chance (measured:
  LAMB 2.22 -> 1.72 and 32%, LARS 2.16 -> 1.60 and 30%)."""
  config = load_config(name, "quick")
  config.data.data_dir = data_dir
  summary = train.run(config, str(tmp_path))
  assert summary["complete"] and summary["final_step"] == 20
  losses = [r["train/loss"] for r in read_jsonl(tmp_path / "metrics.jsonl") if "train/loss" in r]
  assert len(losses) == 2 and losses[1] < 0.8 * losses[0]
  assert summary["evals"]["test"]["accuracy"] > 0.2
