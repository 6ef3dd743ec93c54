"""CREST (Yang, Kang & Mirzasoleiman, ICML 2023) on MNIST-1D large: weighted mini-batch coresets.

    python -m big_batch.main --config configs/mnist1d_crest.py --workdir /tmp/crest

The authors' CIFAR-10 recipe (BigML-CS-UCLA/CREST `utils/arguments.py`) at MNIST-1D's size,
40,000 train / 10,000 test, on the 3-layer 1-D CNN without batch norm: batch 128, plain SGD
(the authors pass no momentum) with weight decay 1e-4 and lr 0.3, linear warm-up then cosine
(the authors: lr 0.1, warm-up, then steps at 50% and 75%; lr 0.1 learns too slowly here, full
data with 0.3 reaches 93.3% test accuracy in 1,500 steps, 1.0 spikes early). Short epochs of
10% of the data (train_frac 0.1: 32 steps), the first a warm start on shuffled batches;
random subsets of rho N = 400 rows (40 per class), coresets of 13 per class (130 rows),
P_0 = 5, tau = 0.1, T_1 and P adapted to the curvature. The budget, 1,500 steps, is 16% of
30 full epochs. `config.crest.method` switches to the baselines: 'full', 'random', 'coreset'
(no check, reselect every `reselect_interval` steps), 'craig' (one selection).
`experiments/crest.py` runs them side by side (results/crest/table.md). Measured there: CREST
91.3% +- 0.4 test accuracy (seeds 0-2) in about 4 min per run on 2 shared CPU cores; full data
92.7% +- 0.5 in 31 s.

`:quick` (the standard 4000/1000 variant, batch 32, 40 steps, rho = 0.05) runs in seconds,
for tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/mnist1d_crest.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "crest"
  config.data = dict(name="mnist1d", variant="large", data_dir=placeholder(str), in_memory=True,
                     num_samples=placeholder(int))
  config.model = dict(name="cnn1d", channels=(25, 25, 25), norm="none")
  config.optimizer = dict(name="sgd", learning_rate=0.3, momentum=0.0, weight_decay=1e-4,
                          schedule="cosine", warmup_steps=100, end_value=0.0)
  config.batch = dict(size=128)
  config.crest = dict(method="crest", train_frac=0.1, random_subset_size=0.01,
                      num_minibatch_coreset=5, check_thresh_factor=0.1, interval_mul=1.0,
                      batch_num_mul=5.0, reselect_interval=placeholder(int),
                      drop_learned=False, watch_interval=5, drop_interval=20,
                      drop_thresh=0.1, min_pool_fraction=0.8, measure_gradient_error=True)
  config.num_steps = 1500
  config.num_epochs = placeholder(float)
  config.num_examples = placeholder(int)
  config.log_every = 50
  config.evals = dict(test=dict(every=100, split="test", batch_size=2000))
  config.checkpoint_every = 500
  config.keep_checkpoints = 2
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.data.variant = "standard"
    config.batch.size = 32
    config.crest.random_subset_size = 0.05
    config.optimizer.warmup_steps = 5
    config.num_steps = 40
    config.log_every = 5
    config.evals = dict(test=dict(every=20, split="test", batch_size=1000))
    config.checkpoint_every = 20
  return config
