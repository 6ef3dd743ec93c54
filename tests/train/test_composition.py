"""Methods compose: a covering product of config switches on the quick supervised config.

Switches: optimizer {adamw, lamb, lars} x norm {batch, ghost} x accumulation {1, 4} x sharding
{replicated, fsdp} x ConAdv {off, on} x adaptive batch {off, on}. Each combination in
`COMBINATIONS` runs end to end through `train.run` on 8 devices with finite losses, is
preempted and resumed to the same losses and parameters bitwise, and matches its one-device
twin (`train.run(..., devices=jax.devices()[:1])`). The covering set holds every pair of
values of any two switches that combine at least once. Pairs that cannot combine are refused
by validation, naming the fields, before anything compiles (`INCOMPATIBLE`, also in README).

Every run compiles the same few programs, so the module uses a persistent compilation cache
(conftest.py's `compilation_cache_dir`): the preempted and the resumed run reuse the
uninterrupted run's executables (about 1 s a run instead of 4).
"""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from big_batch import checks, configs, train
from big_batch.train.validate import validate
from conftest import run_preempted_at

STEPS, PREEMPT_AT = 8, 4

OPTIMIZERS = {
    "adamw": dict(name="adamw", learning_rate=1e-2, schedule="cosine", warmup_steps=2,
                  end_value=0.0, weight_decay=1e-4),
    "lamb": dict(name="lamb", learning_rate=1e-2, weight_decay=0.01,
                 weight_decay_mask="exclude_bias_and_norm",
                 trust_ratio_mask="exclude_bias_and_norm", schedule="cosine", warmup_steps=2,
                 end_value=0.0),
    "lars": dict(name="lars", learning_rate=1.0, momentum=0.9, weight_decay=1e-4,
                 weight_decay_mask="exclude_bias_and_norm",
                 trust_ratio_mask="exclude_bias_and_norm", schedule="cosine", warmup_steps=2,
                 end_value=0.0),
}
CONADV = dict(staleness=1, attack="fgsm", norm="linf", epsilon=0.05, clean_weight=0.0,
              warmup_steps=0, bn_stats="adversarial", concurrency="independent")


def compose(data_dir, optimizer="adamw", norm="batch", accumulation=1, sharding="replicated",
            conadv=False, adaptive=False):
  """configs/mnist1d_cnn.py:quick (a smaller CNN, 8 steps of 256) with the switches set as a
  user sets them: one or two config fields each."""
  config = configs.get("mnist1d_cnn", "quick")
  config.data.data_dir = data_dir
  config.model.channels = (8, 8)
  config.model.norm = norm
  if norm == "ghost":
    config.model.ghost_batch_size = 8  # Divides every device's micro-batch here.
  config.optimizer = OPTIMIZERS[optimizer]
  config.batch.size = 256
  config.batch.accumulation_steps = accumulation
  config.num_steps = STEPS
  config.log_every = 1
  config.checkpoint_every = STEPS
  config.evals = dict(test=dict(every=STEPS, split="test", batch_size=1000))
  if sharding == "fsdp":
    config.sharding = "fsdp"
    config.mesh = dict(data=-1, fsdp=4, seq=1)
  if conadv:
    config.task = "conadv"
    config.adversary = dict(CONADV)
  if adaptive:
    config.task = "adaptive_batch"
    config.batch.size = 32
    config.batch.grid_geometric = True
    config.adaptive_batch = dict(test="norm", eta=0.1, max_batch_size=256)
    config.num_steps = None
    config.num_examples = STEPS * 128
  return config


# A covering set: every pair of values of two switches that combine appears at least once
# (test_the_combinations_cover_every_compatible_pair checks it). Adaptive batch sizes need
# norm='none' (per-example gradients), so that is the norm value of their rows.
COMBINATIONS = [
    dict(optimizer="adamw", norm="batch", accumulation=1, sharding="replicated"),
    dict(optimizer="lamb", norm="ghost", accumulation=4, sharding="fsdp"),
    dict(optimizer="lars", norm="ghost", accumulation=4, sharding="fsdp", conadv=True),
    dict(optimizer="adamw", norm="ghost", accumulation=1, sharding="replicated", conadv=True),
    dict(optimizer="lamb", norm="batch", accumulation=1, sharding="replicated", conadv=True),
    dict(optimizer="adamw", norm="batch", accumulation=4, sharding="fsdp", conadv=False),
    dict(optimizer="lars", norm="batch", accumulation=4, sharding="replicated"),
    dict(optimizer="lamb", norm="none", accumulation=4, sharding="fsdp", adaptive=True),
    dict(optimizer="lars", norm="none", accumulation=1, sharding="replicated", adaptive=True),
    dict(optimizer="adamw", norm="none", accumulation=1, sharding="fsdp", adaptive=True),
]
# Pairs of switches that do not combine, and the words validation says about them.
INCOMPATIBLE = {
    "adaptive batch + batch norm": (dict(adaptive=True, norm="batch"),
                                    "config.model.norm='batch' must be 'none' for adaptive"),
    "adaptive batch + ghost norm": (dict(adaptive=True, norm="ghost"),
                                    "config.model.norm='ghost' must be 'none' for adaptive"),
    "ConAdv + adaptive batch": (dict(conadv=True, adaptive=True, norm="none"),
                                "config.adversary is the switch of task 'conadv'"),
}


def _name(combination):
  return "-".join(f"{k}={v}" for k, v in combination.items())


DEFAULTS = dict(optimizer="adamw", norm="batch", accumulation=1, sharding="replicated",
                conadv=False, adaptive=False)
VALUES = dict(optimizer=("adamw", "lamb", "lars"), norm=("batch", "ghost"),
              accumulation=(1, 4), sharding=("replicated", "fsdp"), conadv=(False, True),
              adaptive=(False, True))


def test_the_combinations_cover_every_compatible_pair():
  rows = [DEFAULTS | c for c in COMBINATIONS]
  conflicts = [{k: v for k, v in c.items() if k != "norm" or v != "none"}
               for c, _ in INCOMPATIBLE.values()]
  names = list(VALUES)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      for va in VALUES[a]:
        for vb in VALUES[b]:
          pair = {a: va, b: vb}
          covered = any(all(row[k] == v for k, v in pair.items()) for row in rows)
          assert covered or pair in conflicts, f"no combination has {pair}"


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return {r["step"]: (r["train/loss"], r["train/batch_size"]) for r in records
          if "train/loss" in r}


def _state(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return jax.tree.map(np.asarray, ocp.StandardCheckpointer().restore(path))


@pytest.mark.parametrize("combination", COMBINATIONS, ids=_name)
def test_switches_combine_resume_exactly_and_8_devices_equal_1(
    combination, data_dir, tmp_path, monkeypatch, compilation_cache_dir):
  config = compose(data_dir, **combination)
  whole = train.run(config, str(tmp_path / "whole"))
  losses = _losses(tmp_path / "whole")
  assert whole["complete"] and all(np.isfinite(loss) for loss, _ in losses.values())
  final = whole["final_step"]
  assert final == STEPS or combination.get("adaptive")

  # Preempted after step PREEMPT_AT, then resumed: the same run, bitwise.
  stopped = run_preempted_at(config, tmp_path / "resumed", PREEMPT_AT, monkeypatch)
  assert stopped["preempted"] and stopped["final_step"] == PREEMPT_AT
  resumed = train.run(config, str(tmp_path / "resumed"))
  assert resumed["final_step"] == final
  assert _losses(tmp_path / "resumed") == losses
  jax.tree.map(np.testing.assert_array_equal, _state(tmp_path / "resumed", final),
               _state(tmp_path / "whole", final))

  # One device: the same global batches, so the same run up to the order of reductions;
  # except that plain batch norm with accumulation normalizes each micro-batch, and which
  # rows form a micro-batch depends on the device count (tasks/accumulation.py: the j-th
  # sub-block of every device's rows), so those runs agree only roughly. Ghost BN's ghost
  # batches are the same rows on any mesh.
  rtol = 2e-2 if combination["norm"] == "batch" and combination["accumulation"] > 1 else 2e-4
  single = config.copy_and_resolve_references()
  single.mesh = dict(data=1, fsdp=1, seq=1)
  train.run(single, str(tmp_path / "one_device"), devices=jax.devices()[:1])
  one = _losses(tmp_path / "one_device")
  assert sorted(one) == sorted(losses)
  for step, (loss, size) in losses.items():
    assert one[step][1] == size, step
    np.testing.assert_allclose(one[step][0], loss, rtol=rtol, err_msg=f"step {step}")


@pytest.mark.parametrize("name", INCOMPATIBLE)
def test_switches_that_do_not_combine_are_refused_by_name(name, data_dir):
  combination, message = INCOMPATIBLE[name]
  config = compose(data_dir, **combination)
  with pytest.raises(checks.ConfigError, match=message.replace(".", r"\.")):
    validate(config, jax.device_count())
