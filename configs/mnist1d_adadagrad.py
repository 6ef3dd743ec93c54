"""AdAdaGrad (Lau, Liu & Kolar 2024) on MNIST-1D: logistic regression, AdaGrad, norm test.

    python -m big_batch.main --config configs/mnist1d_adadagrad.py --workdir /tmp/adadagrad

The authors' MNIST logistic-regression example (timlautk/AdAdaGrad `expt.sh`) at MNIST-1D's
size, 8192 train / 2048 test: the batch starts at 2 and grows by the norm test (eta = 0.1),
capped at the training split; AdaGrad with a constant learning rate and torch's defaults (no
initial accumulator, eps 1e-10); a budget of 100 epochs in examples seen. The learning rate
is 0.1, not the authors' 8e-3, which is far too small on MNIST-1D (0.1 is the best of {8e-3,
3e-2, 0.1, 0.3} at batch 16 over 10 epochs: `experiments/adadagrad.py --sweep`). Sizes round
up to powers of two (one compile each); batches over 4096 rows per device accumulate
micro-batches.

Measured (1 CPU device, 2 shared cores): the batch goes 2 -> 256 -> 8192 in the first three
steps; 101 steps, 811,266 examples; final training loss 1.6456, test accuracy 32.2%; the
command takes 31 s (the run 13 s), 0.56 GB RSS. Logistic regression tops out near 33% on
MNIST-1D: a fixed batch of 16 reaches 33.2% on the same budget (results/adadagrad/table.md).
`:quick` (the standard 4000/1000 variant, at most 64 rows, 1024 examples) runs in seconds, for
tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder

NUM_SAMPLES = 10240  # 8192 train / 2048 test: the largest grid size (2^13) is the split.
NUM_TRAIN = 8192
EPOCHS = 100
MAX_MICRO_BATCH = 4096  # Rows per device per micro-batch; bigger batches accumulate.


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/mnist1d_adadagrad.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "adaptive_batch"
  config.data = dict(name="mnist1d", variant=placeholder(str), data_dir=placeholder(str),
                     in_memory=True, num_samples=NUM_SAMPLES)
  # Logistic regression: no hidden layer.
  config.model = dict(name="mlp", hidden=(), norm="none")
  config.optimizer = dict(name="adagrad", learning_rate=0.1, initial_accumulator_value=0.0,
                          eps=1e-20)
  config.batch = dict(size=2, grid_geometric=True, max_micro_batch=MAX_MICRO_BATCH)
  config.adaptive_batch = dict(test="norm", eta=0.1, theta=0.1, nu=0.1, test_interval=1,
                               max_batch_size=NUM_TRAIN)
  config.num_steps = placeholder(int)
  config.num_epochs = placeholder(float)
  config.num_examples = EPOCHS * NUM_TRAIN
  config.log_every = 10
  config.evals = dict(test=dict(every=200, split="test", batch_size=2048),
                      train_split=dict(every=200, split="train", batch_size=4096))
  config.checkpoint_every = 1000
  config.keep_checkpoints = 2
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.data.num_samples = placeholder(int)
    config.data.variant = "standard"
    config.adaptive_batch.max_batch_size = 64
    config.num_examples = 1024
    config.log_every = 5
    config.evals = dict(test=dict(every=20, split="test", batch_size=1000))
    config.checkpoint_every = 20
  return config
