"""Policy-gradient estimators for alignment: REINFORCE and its baselines (ReMax's greedy one,
a moving mean, RLOO and group means), and PPO's clipped surrogate with a value loss.

The REINFORCE family share one loss, that of the ReMax code (`actor_loss_fn`),

    L(θ) = −Σ_{i,t} G_{i,t} log π_θ(a_{i,t}) m_{i,t} / Σ_{i,t} m_{i,t},

with G the KL-shaped returns (returns.py) of r_i − b_i, and differ in the baseline b_i:

    'reinforce'    b = 0                                        (Williams 1992)
    'moving_mean'  b = m, m ← μ m + (1−μ) mean_i r_i after each batch (m = 0 at the start)
    'remax'        b = r(x_i, ā_i), ā the greedy response        (Li et al. 2024, eq. 5)
    'rloo'         b = mean of the other K−1 samples of the prompt (Kool et al. 2019;
                   Ahmadian et al. 2024)
    'group_mean'   b = mean of the prompt's K samples, and r − b divided by their standard
                   deviation (+1e-6) when normalized: GRPO's advantage (Shao et al. 2024, §4.1)

ReMax's baseline depends on the prompt and θ but not on the sampled response, so with β = 0
and γ = 1 its gradient is unbiased for ∇ E[r]; it is exactly 0 when the sample is the greedy
response (tests/rlhf/test_estimators.py checks both by enumeration on a tiny policy).

PPO (Schulman et al. 2017, eq. 7, as DeepSpeed-Chat's `actor_loss_fn` / `critic_loss_fn`):

    L_clip  = Σ max(−Â ρ, −Â clip(ρ, 1−ε, 1+ε)) m / Σ m,       ρ = π_θ(a) / π_old(a),
    L_value = ½ Σ max((V − R)², (clip(V, V_old ± ε_v) − R)²) m / Σ m.
"""
import jax.numpy as jnp

ESTIMATORS = ("remax", "reinforce", "moving_mean", "rloo", "group_mean", "ppo")
GROUP_ESTIMATORS = ("rloo", "group_mean")


def baselines(estimator: str, rewards, *, greedy_rewards=None, moving_mean=None,
              group_size: int = 1, normalize: bool = False):
  """(advantage r − b per sample [N], the baseline b [N]) for a REINFORCE-family estimator.

  For the group estimators the N = B·K samples are K consecutive rows per prompt.
  """
  if estimator == "reinforce":
    baseline = jnp.zeros_like(rewards)
  elif estimator == "moving_mean":
    baseline = jnp.broadcast_to(moving_mean, rewards.shape)
  elif estimator == "remax":
    baseline = greedy_rewards
  elif estimator in GROUP_ESTIMATORS:
    groups = rewards.reshape(-1, group_size)
    total = groups.sum(-1, keepdims=True)
    if estimator == "rloo":
      baseline = (total - groups) / (group_size - 1)
    else:
      baseline = jnp.broadcast_to(total / group_size, groups.shape)
    if estimator == "group_mean" and normalize:
      scale = groups.std(-1, keepdims=True) + 1e-6
      return ((groups - baseline) / scale).reshape(-1), baseline.reshape(-1)
    baseline = baseline.reshape(-1)
  else:
    raise ValueError(f"estimator={estimator!r} has no baseline here; one of {ESTIMATORS[:-1]}")
  return rewards - baseline, baseline


def update_moving_mean(moving_mean, rewards, decay: float):
  """m ← μ m + (1 − μ) mean(r)."""
  return decay * moving_mean + (1 - decay) * rewards.mean()


def policy_gradient_loss(log_probs, returns, mask):
  """−Σ G log π m / Σ m (the ReMax code's actor loss); `returns` are constants."""
  return -(returns * log_probs * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def ppo_clipped_loss(log_probs, old_log_probs, advantages, mask, clip: float):
  """L_clip of the module docstring (ε = `clip`)."""
  ratio = jnp.exp(log_probs - old_log_probs)
  unclipped = -advantages * ratio
  clipped = -advantages * jnp.clip(ratio, 1 - clip, 1 + clip)
  return (jnp.maximum(unclipped, clipped) * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def value_loss(values, old_values, returns, mask, clip: float):
  """L_value of the module docstring (ε_v = `clip`)."""
  clipped = jnp.clip(values, old_values - clip, old_values + clip)
  worst = jnp.maximum((values - returns) ** 2, (clipped - returns) ** 2)
  return 0.5 * (worst * mask).sum() / jnp.maximum(mask.sum(), 1.0)
