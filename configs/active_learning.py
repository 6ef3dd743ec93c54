"""One training round of batch active learning (Holzmüller et al., JMLR 2023, §4.2): the
10-128-128-1 ReLU MLP trained by MSE with Adam (learning rate 3e-3 decayed linearly to 0) on
the labelled rows of scikit-learn's diabetes data (`regression` builder: standardised, 353
train / 89 test rows), evaluated by RMSE and MAE on the test split.

    python -m big_batch.main --config configs/active_learning.py --workdir /tmp/al_round \\
        --config.data.train_subset=/tmp/labelled.npy

`config.data.train_subset` (a .npy of train-row indices) is the labelled set; without it the round
trains on every train row. experiments/active_learning.py (part c) runs its rounds this way,
alternating with `big_batch.selection.select_batch` on the network the round trained
(`selection.regression_task.trained_model`). Variants: --config.data.variant=friedman1 or
friedman3 (the input size is read from the data).

Measured: on all 353 train rows, 500 steps of batch 32 (2.2 s on 2 CPU cores), test RMSE
0.875 and MAE 0.664 of the standardised target; rounds on labelled subsets are in
results/active_learning/table_c.md. `:quick` runs 20 steps, for tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder

STEPS = 500


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/active_learning.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "regression"
  config.data = dict(name="regression", variant="diabetes", data_dir=placeholder(str),
                     in_memory=True, train_subset=placeholder(str))
  config.model = dict(name="mlp", hidden=(128, 128))
  config.optimizer = dict(name="adamw", learning_rate=3e-3, weight_decay=0.0,
                          schedule="linear", warmup_steps=0, end_value=0.0)
  config.batch = dict(size=32, accumulation_steps=1)
  config.num_steps = STEPS
  config.num_epochs = placeholder(float)
  config.num_examples = placeholder(int)
  config.log_every = 100
  config.evals = dict(test=dict(every=STEPS, split="test", batch_size=96))
  config.checkpoint_every = STEPS
  config.keep_checkpoints = 1
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.num_steps = 20
    config.log_every = 10
    config.evals = dict(test=dict(every=20, split="test", batch_size=96))
    config.checkpoint_every = 20
  return config
