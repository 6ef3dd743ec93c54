"""Methods compose, on the LM: LASP-2 sequence parallelism + LAMB + gradient accumulation +
the Power Lines weight decay for the run's batch, on configs/lm_lasp.py's byte-level
linear-attention LM and CPython's help text.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
      python -m big_batch.main --config configs/lm_lasp_lamb_power_lines.py --workdir /tmp/lm_pl

  LASP-2 (Sun et al. 2025) over seq=-1 (8 simulated devices: each holds 32 bytes of every
  256-byte window); LAMB (You et al. 2020) with BERT's masks; batch 64 windows in 2
  micro-batches of 32; weight decay lambda = B / (eta tau D) (Bergsma et al. 2025, "Power
  Lines", Eq. for AdamW's timescale tau = B / (eta lambda D)) for the timescale tau = 3 of the
  run, near the tau_opt of 2.9 - 3.3 that experiments/power_lines.py measured for this model
  family at 16 tokens per parameter (results/power_lines/table.md). With B and D in tokens,
  lambda = 1 / (eta tau S) for S steps. The timescale law is AdamW's, whose decay multiplies
  the learning rate; LAMB adds lambda w to the Adam direction before the layerwise trust ratio,
  so for LAMB it sets the decay's share of the update rather than an exact EMA timescale.

Measured (8 simulated devices, seq=8, 2 shared CPU cores, seed 0): validation 2.549 bits per
byte (1.767 nats, 54.7% next-byte accuracy) after 200 steps (12,800 windows, as many as
configs/lm_lasp.py's 400 steps of 32), train loss 1.476 nats; 222 s of training, 3 min 47 s
for the command, 1.5 GB resident. The same run with lm_lasp.py's weight decay 0.01 instead of
the Power Lines 0.167 ends at 2.549 bits per byte too (train 1.461): at this size and length
LAMB's weight decay hardly matters, so the run checks that the pieces compose rather than the
decay law (experiments/power_lines.py tests that, with AdamW). lm_lasp.py's 400 steps of
batch 32 reach 2.41: at equal examples the larger batch, with half the updates, trails.
`:quick` shrinks it to seconds for tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder

from big_batch.scaling import power_lines

SEQ_LEN = 256
BATCH = 64            # Windows per update.
MICRO_BATCHES = 2
STEPS = 200
LEARNING_RATE = 1e-2  # LAMB's peak (configs/lm_lasp.py).
TAU = 3.0             # Timescale as a fraction of the run (results/power_lines: tau_opt ~3).


def power_lines_weight_decay(batch: int, steps: int, learning_rate: float = LEARNING_RATE,
                             tau: float = TAU) -> float:
  """lambda = B / (eta tau D) with D = S B tokens (scaling.power_lines)."""
  tokens = batch * SEQ_LEN
  return float(power_lines.weight_decay_for_timescale(tau, tokens, learning_rate,
                                                      steps * tokens))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/lm_lasp_lamb_power_lines.py takes no argument or 'quick', "
                     f"got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "lm"
  config.data = dict(name="pydoc_text", seq_len=SEQ_LEN, data_dir=placeholder(str),
                     in_memory=True)
  config.model = dict(name="linear_attention_lm", vocab_size=256, dim=128, depth=2, heads=4,
                      mlp_dim=placeholder(int), tie_embeddings=True, sequence_parallel="lasp2",
                      chunk_size=placeholder(int))
  config.optimizer = dict(name="lamb", learning_rate=LEARNING_RATE, schedule="cosine",
                          warmup_steps=20, end_value=0.0,
                          weight_decay=power_lines_weight_decay(BATCH, STEPS),
                          weight_decay_mask="exclude_bias_and_norm",
                          trust_ratio_mask="exclude_bias_and_norm")
  config.batch = dict(size=BATCH, accumulation_steps=MICRO_BATCHES, base_size=BATCH,
                      lr_scaling="none")
  config.num_steps = STEPS
  config.num_epochs = placeholder(float)
  config.num_examples = placeholder(int)
  # As configs/lm_lasp.py: at most 32 computations in flight per simulated CPU device.
  config.log_every = 20
  config.evals = dict(validation=dict(every=100, split="validation", batch_size=128))
  config.checkpoint_every = 100
  config.keep_checkpoints = 2
  config.mesh = dict(data=1, fsdp=1, seq=-1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.model.update(dim=32, depth=1, heads=2)
    config.batch.update(size=16, base_size=16)
    config.num_steps = 12
    config.optimizer.update(warmup_steps=2, weight_decay=power_lines_weight_decay(16, 12))
    config.log_every = 6
    config.evals.validation.every = 12
    config.checkpoint_every = 12
  return config
