"""Per-token returns of a response: ReMax's KL-shaped returns, and PPO's rewards with GAE.

Response tokens t = 0..L−1 (L = the mask's sum), log π and log π_ref of each, a scalar
reward r per response (already minus its baseline for the REINFORCE family).

ReMax (Li et al. 2024, `liziniu/ReMax` step3_rlhf_finetuning/remax_trainer.py,
`compute_returns`): with the reward clipped, c = clip(r, −5, 5),

    G_t = β (log π_ref(a_t) − log π(a_t)) + γ^{L−t} c,

the KL term per token and NOT accumulated over later tokens (the code overwrites
`cumulative_kl` each step), the reward discounted once per step back from the end (the last
token gets γ¹).

PPO (DeepSpeed-Chat `ppo_trainer.py`, which ReMax compares against): per-token rewards
ρ_t = −β (log π(a_t) − log π_ref(a_t)), plus c at the last token t = L−1; generalized
advantage estimation (Schulman et al. 2016, eq. 16),

    δ_t = ρ_t + γ V_{t+1} − V_t   (V_L = 0),    Â_t = Σ_l (γλ)^l δ_{t+l},    R_t = Â_t + V_t.
"""
import jax
import jax.numpy as jnp

REWARD_CLIP = 5.0


def kl_shaped_returns(log_probs, ref_log_probs, mask, reward, *, kl_coef: float, gamma: float,
                      reward_clip: float = REWARD_CLIP):
  """G_t of the module docstring, [B, T] (0 at masked positions); reward [B]."""
  length = mask.sum(-1, keepdims=True)
  t = jnp.arange(mask.shape[-1])[None, :]
  clipped = jnp.clip(reward, -reward_clip, reward_clip)[:, None]
  discounted = gamma ** (length - t) * clipped
  return (kl_coef * (ref_log_probs - log_probs) + discounted) * mask


def ppo_rewards(log_probs, ref_log_probs, mask, reward, *, kl_coef: float,
                reward_clip: float = REWARD_CLIP):
  """ρ_t = −β (log π − log π_ref) per token, plus clip(r) at the last unmasked token: [B, T]."""
  last = jnp.arange(mask.shape[-1])[None, :] == (mask.sum(-1, keepdims=True) - 1)
  clipped = jnp.clip(reward, -reward_clip, reward_clip)[:, None]
  return (-kl_coef * (log_probs - ref_log_probs) + last * clipped) * mask


def gae(rewards, values, mask, *, gamma: float, lam: float):
  """(advantages Â_t, returns R_t = Â_t + V_t), [B, T] each, 0 at masked positions.

  Positions past the end are masked, so V beyond the response is 0 (the episode ends)."""
  rewards, values = rewards * mask, values * mask
  next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1)
  deltas = rewards + gamma * next_values - values

  def step(advantage, inputs):
    delta, m = inputs
    advantage = (delta + gamma * lam * advantage) * m
    return advantage, advantage

  _, advantages = jax.lax.scan(step, jnp.zeros_like(deltas[:, 0]),
                               (deltas.T, mask.T), reverse=True)
  advantages = advantages.T
  return advantages, (advantages + values) * mask
