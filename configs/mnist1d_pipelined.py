"""Simulated fine-grained Pipelined Backpropagation (Kosson et al. 2021) on MNIST-1D at batch 4.

    python -m big_batch.main --config configs/mnist1d_pipelined.py --workdir /tmp/pipelined

A 4-conv CNN with group norm, each conv block and the head a pipeline stage (S = 5, delays
D_s = 2 (S - 1 - s) = 8, 6, 4, 2, 0 updates), forward passes on the weights of D_s updates
ago, backward passes on the current ones (tasks/pipelined.py), Spike Compensation and Linear
Weight Prediction on. Momentum SGD carried from m = 0.9, lr = 0.3 at batch 128 to batch 4
by the rules of scaling/momentum_scaling.py (m = 0.9^(4/128), lr keeping lr/((1-m) b)).
3 epochs of the standard 4000/1000 split: the '+SC+LWP' batch-4 seed-0 cell of
experiments/pipelined_backprop.py, whose table (results/pipelined_backprop/table.md) has
the measured accuracy of every method and batch.
`:quick` (60 steps, batch 4) runs in seconds, for tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder

from big_batch.scaling import momentum_scaling

BASE_BATCH, BASE_MOMENTUM, BASE_LEARNING_RATE = 128, 0.9, 0.3
NUM_TRAIN = 4000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/mnist1d_pipelined.py takes no argument or 'quick', got {arg!r}")
  batch = 4
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "pipelined"
  config.data = dict(name="mnist1d", variant="standard", data_dir=placeholder(str),
                     in_memory=True, num_samples=placeholder(int))
  config.model = dict(name="staged_cnn", channels=(32, 32, 32, 32), groups=4)
  config.optimizer = dict(
      name="sgd", schedule="constant", weight_decay=0.0,
      momentum=momentum_scaling.scale_momentum(BASE_MOMENTUM, BASE_BATCH, batch),
      learning_rate=momentum_scaling.scale_learning_rate_for_momentum(
          BASE_LEARNING_RATE, BASE_MOMENTUM, BASE_BATCH, batch))
  config.pipelined = dict(stage_delay=2, weights="pipelined", spike_compensation=True,
                          weight_prediction=True)
  config.batch = dict(size=batch)
  config.num_steps = placeholder(int)
  config.num_epochs = 3.0
  config.num_examples = placeholder(int)
  config.log_every = 500
  config.evals = dict(test=dict(every=1500, split="test", batch_size=1000))
  config.checkpoint_every = 1500
  config.keep_checkpoints = 2
  # Batches down to one row are not split over devices; spare devices sit on 'seq', unused.
  config.mesh = dict(data=1, fsdp=1, seq=-1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.num_epochs = None
    config.num_steps = 60
    config.log_every = 20
    config.evals.test.every = 30
    config.checkpoint_every = 30
  return config
