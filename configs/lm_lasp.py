"""A byte-level linear-attention LM on CPython's help text, sequence parallel with LASP-2, LAMB.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
      python -m big_batch.main --config configs/lm_lasp.py --workdir /tmp/lm_lasp

The mesh is data=1, seq=-1: every device holds a slice of each sequence (seq=8 with the 8
simulated CPU devices above, seq=1 on a plain 1-device machine, where LASP-2 reduces to the
chunked single-device algorithm). Hybrid data and sequence parallelism as in LASP's
(DP=2, SP=4) example: `--config.mesh.data=2 --config.mesh.seq=4`. Single-device attention:
`--config.model.sequence_parallel=blockwise --config.mesh.seq=1 --config.mesh.data=-1`.

Expected (measured, 2 shared CPU cores, 8 simulated devices, seq=8): validation 2.41 bits per
byte (1.67 nats, 58% next-byte accuracy) on the 5 held-out help topics after 400 steps, in
3 min 15 s of wall time with data preparation and compilation (6 min 47 s when other jobs
loaded the machine); train 1.69 bits per byte: with 0.44 MB of text, longer runs overfit
(validation was 2.40 already at step 300). `:quick` shrinks it to seconds for tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/lm_lasp.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "lm"
  config.data = dict(name="pydoc_text", seq_len=256, data_dir=placeholder(str), in_memory=True)
  # 'lasp2' all-gathers the d x d attention states over `seq` once per layer; 'lasp1' passes
  # them along the ring; 'blockwise' and 'dense' are single-device (parallel/lasp.py).
  config.model = dict(name="linear_attention_lm", vocab_size=256, dim=128, depth=2, heads=4,
                      mlp_dim=placeholder(int), tie_embeddings=True, sequence_parallel="lasp2",
                      chunk_size=placeholder(int))
  # LAMB (You et al. 2020) with the BERT recipe: 1-D parameters (norm scales) get neither
  # weight decay nor the trust ratio.
  config.optimizer = dict(name="lamb", learning_rate=1e-2, schedule="cosine", warmup_steps=40,
                          end_value=0.0, weight_decay=0.01,
                          weight_decay_mask="exclude_bias_and_norm",
                          trust_ratio_mask="exclude_bias_and_norm",
                          grad_clip_norm=placeholder(float))
  config.batch = dict(size=32, accumulation_steps=1, base_size=32, lr_scaling="none")
  config.num_steps = 400
  config.num_epochs = placeholder(float)
  config.num_examples = placeholder(int)
  # Logging reads the metrics back, which bounds how many steps are queued on the devices.
  # Keep it (and the computations of one evaluation) under 32: XLA:CPU admits 32 in-flight
  # computations per device, and with more queued, a launch waiting for a slot holds one of
  # the 8 threads that the 8 simulated devices' collectives need (a deadlock).
  config.log_every = 20
  # One eval batch holds all 118 validation windows (see log_every).
  config.evals = dict(validation=dict(every=100, split="validation", batch_size=128))
  # Warm start named subtrees of the state from another run (train/init_from.py).
  config.init_from = dict(workdir=placeholder(str), paths=("params",), step=placeholder(int))
  config.checkpoint_every = 200
  config.keep_checkpoints = 2
  config.mesh = dict(data=1, fsdp=1, seq=-1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.model.update(dim=32, depth=1, heads=2)
    config.batch.update(size=16, base_size=16)
    config.num_steps = 30
    config.optimizer.warmup_steps = 5
    config.log_every = 10
    config.evals.validation.every = 30
    config.checkpoint_every = 30
  return config
