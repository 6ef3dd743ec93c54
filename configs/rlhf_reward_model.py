"""RLHF stage 2: a Bradley-Terry reward model on the byte-level linear-attention LM's body, on
preference pairs of help-text windows ranked by the prose score (src/big_batch/rlhf/).

    python -m big_batch.main --config configs/lm_lasp.py --workdir /tmp/rlhf_lm \\
      --config.model.dim=64 --config.model.sequence_parallel=blockwise \\
      --config.mesh.seq=1 --config.mesh.data=-1 --config.num_steps=300
    python -m big_batch.main --config configs/rlhf_reward_model.py --workdir /tmp/rlhf_rm \\
      --config.init_from.workdir=/tmp/rlhf_lm

Pairs: 32 prompt bytes and two 32-byte responses per window (reward.preference_pairs), the
pretrained LM's body warm-started (init_from paths {'params/lm': 'params'}), a zero-initialised
scalar head. Measured (experiments/remax.py runs exactly these two commands, one CPU device,
2 cores shared with other jobs): the LM reaches 2.71 bits per byte on the held-out topics
(51.6% next-byte accuracy) in about 4 min; the reward model a held-out pairwise accuracy of
77.4% against the prose score (Bradley-Terry loss 0.478) in about 4 min
(results/remax/table.md). `:quick` is a few seconds from scratch, for tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder

PROMPT_LEN, RESPONSE_LEN = 32, 32
# The policy's architecture (configs/lm_lasp.py with dim 64, single-device attention).
MODEL = dict(name="linear_attention_lm", vocab_size=256, dim=64, depth=2, heads=4,
             mlp_dim=placeholder(int), tie_embeddings=True, sequence_parallel="blockwise",
             chunk_size=placeholder(int))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/rlhf_reward_model.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "rlhf_reward_model"
  config.data = dict(name="pydoc_text", seq_len=PROMPT_LEN + RESPONSE_LEN,
                     data_dir=placeholder(str), in_memory=True)
  config.model = dict(MODEL)
  config.preference = dict(prompt_len=PROMPT_LEN, max_corruption=0.5)
  config.optimizer = dict(name="adamw", learning_rate=1e-3, schedule="cosine", warmup_steps=20,
                          end_value=0.0, weight_decay=0.0, grad_clip_norm=1.0)
  config.batch = dict(size=64)
  config.num_steps = 300
  config.num_epochs = placeholder(float)
  config.num_examples = placeholder(int)
  config.log_every = 25
  config.evals = dict(validation=dict(every=100, split="validation", batch_size=256))
  config.init_from = dict(workdir=placeholder(str), paths={"params/lm": "params"},
                          step=placeholder(int))
  config.checkpoint_every = 300
  config.keep_checkpoints = 1
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.model.update(dim=16, depth=1, heads=2)
    config.data.seq_len = 24
    config.preference.prompt_len = 8
    config.batch.size = 16
    config.num_steps = 8
    config.optimizer.warmup_steps = 2
    config.log_every = 4
    config.evals.validation = dict(every=8, split="validation", batch_size=256)
    config.checkpoint_every = 8
  return config
