"""ConAdv (Liu et al. 2022) on MNIST-1D large (40000 train / 10000 test): the 1-D ResNet-20,
LAMB at batch 4096, FGSM perturbations in an l-inf ball of radius 0.05 built from the
weights of the step before (staleness 1).

    python -m big_batch.main --config configs/mnist1d_conadv.py --workdir /tmp/mnist1d_conadv

Measured: test accuracy 90.8% (train 90.9%) after 97 updates (10 epochs), 5 min on 2 shared
CPU cores, 1.5 GB resident. `:quick` runs 12 steps of batch 256 on the standard variant (4000 train)
in seconds, for tests. experiments/conadv.py compares vanilla, DisAdv and ConAdv over batch
sizes (results/conadv/table.md).
"""
import ml_collections
from ml_collections.config_dict import placeholder

BASE_BATCH = 128  # The batch LAMB's learning rate is given at; larger ones scale it by sqrt.
BATCH = 4096
EPOCHS = 10
LEARNING_RATE = 5e-3  # LAMB's peak at BASE_BATCH.
EPSILON = 0.05


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/mnist1d_conadv.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "conadv"
  config.data = dict(name="mnist1d", variant="large", data_dir=placeholder(str), in_memory=True,
                     num_samples=placeholder(int))
  # norm_momentum 0.9: with few large steps flax's 0.99 leaves the running statistics (used
  # at evaluation) behind the weights.
  config.model = dict(name="resnet", depth=20, width=8, norm="batch",
                      ghost_batch_size=placeholder(int), norm_momentum=0.9)
  config.optimizer = dict(name="lamb", learning_rate=LEARNING_RATE, schedule="cosine",
                          warmup_steps=10, end_value=0.0, weight_decay=1e-4,
                          weight_decay_mask="exclude_bias_and_norm",
                          trust_ratio_mask=placeholder(str))
  config.batch = dict(size=BATCH, accumulation_steps=1, base_size=BASE_BATCH, lr_scaling="sqrt")
  # tasks/conadv.py: staleness 0 is DisAdv, 1 ConAdv; steps and step_size are PGD's.
  config.adversary = dict(staleness=1, attack="fgsm", norm="linf", epsilon=EPSILON,
                          steps=placeholder(int), step_size=placeholder(float), clean_weight=0.0,
                          warmup_steps=0, bn_stats="adversarial", concurrency="independent")
  config.num_epochs = float(EPOCHS)
  config.num_steps = placeholder(int)
  config.num_examples = placeholder(int)
  config.log_every = 20
  config.evals = dict(test=dict(every=1000, split="test", batch_size=2000),
                      train=dict(every=1000, split="train", batch_size=2000))
  config.checkpoint_every = 100
  config.keep_checkpoints = 2
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.data.variant = "standard"
    config.batch.size = 256
    config.optimizer.warmup_steps = 2
    config.num_epochs = None
    config.num_steps = 12
    config.log_every = 4
    config.evals = dict(test=dict(every=12, split="test", batch_size=1000))
    config.checkpoint_every = 6
  return config
