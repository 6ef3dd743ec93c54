"""Cephalo-style uneven data parallelism on two emulated devices, one 4x slower than the other:
the 1-D CNN (no batch norm) on MNIST-1D, AdamW at batch 256.

    python -m big_batch.launch --num_processes 2 -- \\
        --config configs/mnist1d_heterogeneous.py --workdir /tmp/mnist1d_heterogeneous

Two processes of one CPU device each, joined by `jax.distributed`. The fast device (process 0)
trains on 208 of the 256 rows per step and the slow one (`slowdown` 4: it computes every
micro-batch 4 times) on 48, in micro-batches of 16: the split
`python -m big_batch.parallel.planner` gives for a 1:4 speed ratio (docs/heterogeneous.md).
The update is that of plain batch-256 training whatever the split. Measured: 87.5% test
accuracy after 1500 steps, 2 min 54 s for the command on 2 shared CPU cores, 0.6 GB per
process; the supervised task on one device with the same config: 87.0% (the runs differ by
float rounding; without batch norm this CNN overfits, train accuracy 100%).
`:quick` runs 12 steps of batch 64 (rows 48 and 16) for tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/mnist1d_heterogeneous.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "heterogeneous"
  config.data = dict(name="mnist1d", variant="standard", data_dir=placeholder(str), in_memory=True,
                     num_samples=placeholder(int))
  config.model = dict(name="cnn1d", channels=(25, 25, 25), norm="none")
  config.optimizer = dict(name="adamw", learning_rate=1e-2, schedule="cosine",
                          warmup_steps=50, end_value=0.0, weight_decay=0.0)
  config.batch = dict(size=256)
  # tasks/heterogeneous.py: rows per device (mesh order), the common micro-batch, and the
  # emulated slowdown of each device.
  config.heterogeneous = dict(rows=(208, 48), micro_batch=16, slowdown=(1, 4))
  config.num_steps = 1500
  config.num_epochs = placeholder(float)
  config.num_examples = placeholder(int)
  config.log_every = 100
  config.evals = dict(test=dict(every=500, split="test", batch_size=1000))
  config.checkpoint_every = 500
  config.keep_checkpoints = 2
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.batch.size = 64
    config.heterogeneous.rows = (48, 16)
    config.num_steps = 12
    config.optimizer.warmup_steps = 2
    config.log_every = 4
    config.evals.test.every = 6
    config.checkpoint_every = 6
  return config
