"""RLHF stage 3: ReMax (Li et al. 2024) on the byte-level linear-attention LM, and with
`--config.alignment.estimator` REINFORCE (`reinforce`), a moving-mean baseline
(`moving_mean`), RLOO (`rloo`), GRPO-style group means (`group_mean`) or PPO (`ppo`), each
with the per-token KL penalty to the frozen pretrained LM (src/big_batch/rlhf/align_task.py).

    # stage 1 and 2 as in configs/rlhf_reward_model.py, then
    python -m big_batch.main --config configs/rlhf_remax.py --workdir /tmp/rlhf_remax \\
      --config.init_from.workdir=/tmp/rlhf_lm --config.alignment.reward_workdir=/tmp/rlhf_rm

Prompts: 32-byte help-text windows, 32-byte responses (top-p 0.9, temperature 1, as the ReMax
code), batch 32 prompts; ReMax's hyperparameters (β = kl_coef 0.05, γ = 0.99, reward clip 5)
and DeepSpeed-Chat's PPO ones (ε = 0.2, value clip 0.2, GAE γ = 1, λ = 0.95, 1 epoch). The
learning rate is for a 0.15M-parameter model, not the paper's 1e-6 for 7B. Measured
(experiments/remax.py, 3 seeds, 100 iterations, 45-120 s per run on 2 shared cores): held-out
reward of sampled responses from -0.12 before alignment to 0.52 ± 0.04 with ReMax (KL 0.93,
prose score 0.43 -> 0.61), 0.80 ± 0.02 with PPO (KL 1.63, prose 0.70), 0.73 ± 0.04 with RLOO,
0.75 ± 0.01 with REINFORCE (KL 4.4); every estimator in results/remax/table.md.
`:quick` trains a tiny random policy on the prose score itself (reward='ground_truth') for
a few steps, for tests.
"""
import ml_collections
from ml_collections.config_dict import placeholder

from big_batch.configs.rlhf_reward_model import MODEL, PROMPT_LEN, RESPONSE_LEN


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/rlhf_remax.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "rlhf_align"
  config.data = dict(name="pydoc_text", seq_len=PROMPT_LEN, data_dir=placeholder(str),
                     in_memory=True)
  config.model = dict(MODEL)
  config.alignment = dict(
      estimator="remax", kl_coef=0.05, gamma=0.99, reward_clip=5.0, response_len=RESPONSE_LEN,
      temperature=1.0, top_p=0.9, group_size=2, group_normalize=True, moving_mean_decay=0.9,
      reward="model", reward_workdir=placeholder(str), reward_step=placeholder(int),
      ppo=dict(clip=0.2, value_clip=0.2, gamma=1.0, lam=0.95, epochs=1))
  policy = dict(name="adamw", learning_rate=1e-4, schedule="cosine", warmup_steps=0,
                end_value=0.0, weight_decay=0.1, grad_clip_norm=1.0)
  config.optimizers = dict(policy=policy, critic=dict(policy, learning_rate=1e-3, weight_decay=0.0))
  config.batch = dict(size=32)
  config.num_steps = 100
  config.num_epochs = placeholder(float)
  config.num_examples = placeholder(int)
  config.log_every = 10
  config.evals = dict(validation=dict(every=50, split="validation", batch_size=128))
  config.init_from = dict(workdir=placeholder(str), paths={"policy": "params",
                                                           "reference": "params"},
                          step=placeholder(int))
  config.checkpoint_every = 100
  config.keep_checkpoints = 1
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.model.update(dim=16, depth=1, heads=2)
    config.data.seq_len = 8
    config.alignment.update(response_len=8, reward="ground_truth")
    config.batch.size = 8
    config.num_steps = 6
    config.log_every = 2
    config.evals.validation = dict(every=6, split="validation", batch_size=512)
    config.checkpoint_every = 3
  return config
