"""RLHF on the byte-level linear-attention LM: a Bradley-Terry reward model and policy-gradient
alignment (ReMax, REINFORCE, RLOO / group baselines, PPO) with a per-token KL penalty."""
