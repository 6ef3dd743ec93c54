"""The losses of SAC-N and EDAC as pure functions of arrays (An et al. 2021, NeurIPS, eqs. 3-4
and 6; Nikulin et al. 2022 use them unchanged for LB-SAC). Q values of an ensemble have shape
(N, B): critic j's value for batch row b. The reductions follow the reference code (CORL
`algorithms/offline/sac_n.py`, `edac.py`).
"""
import jax
import jax.numpy as jnp


def critic_target(reward, done, next_q, next_log_prob, alpha, gamma: float):
  """y = r + γ (1 − d) [min_j Q̄_j(s', a') − α log π(a'|s')], a' ~ π(·|s') (SAC-N, eq. 4).

  next_q: (N, B), the target critics at (s', a'); the min is over the ensemble axis 0.
  """
  soft_value = next_q.min(axis=0) - alpha * next_log_prob
  return reward + gamma * (1.0 - done) * soft_value


def critic_loss(q, target):
  """Σ_j mean_b (Q_j(s_b, a_b) − y_b)², the EDAC-style reduction (CORL `sac_n.py`: a sum over
  the critics of each critic's mean squared error). q: (N, B); target: (B,), not
  differentiated."""
  return ((q - jax.lax.stop_gradient(target)[None]) ** 2).mean(axis=1).sum(axis=0)


def actor_loss(q, log_prob, alpha):
  """mean_b [α log π(a_b|s_b) − min_j Q_j(s_b, a_b)], a ~ π reparameterized (SAC-N, eq. 3).
  q: (N, B) at the policy's actions; the min is over the ensemble axis 0."""
  return (alpha * log_prob - q.min(axis=0)).mean()


def temperature_loss(log_alpha, log_prob, target_entropy: float):
  """mean_b [−log α (log π(a_b|s_b) + H̄)] (SAC, Haarnoja et al. 2018b, eq. 18), H̄ the target
  entropy (−action_dim by default); log π is not differentiated."""
  return (-log_alpha * jax.lax.stop_gradient(log_prob + target_entropy)).mean()


def edac_diversity(action_grads):
  """EDAC's ensemble gradient-diversity term L_ES (An et al. 2021, eq. 6), as CORL computes
  it after the EDAC authors: with g_j = ∂Q_j/∂a at the data's (s_b, a_b) and
  ĝ_j = g_j / (‖g_j‖ + 1e-10), the batch mean of Σ_{i≠j} ⟨ĝ_i, ĝ_j⟩ / (N − 1).

  action_grads: (N, B, action_dim). Each ordered pair counts, so N parallel non-zero
  gradients give N, orthogonal ones 0.
  """
  n = action_grads.shape[0]
  unit = action_grads / (jnp.linalg.norm(action_grads, axis=-1, keepdims=True) + 1e-10)
  products = jnp.einsum("ibk,jbk->bij", unit, unit)
  off_diagonal = products * (1.0 - jnp.eye(n, dtype=products.dtype))
  return off_diagonal.sum(axis=(1, 2)).mean() / (n - 1)


def polyak(target, online, tau: float):
  """θ̄ ← (1 − τ) θ̄ + τ θ, leaf by leaf (the target critics' soft update)."""
  return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def q_std_over_ensemble(q):
  """The std of Q over the ensemble, averaged over the batch: at uniformly random actions it
  is LB-SAC's OOD penalty, `q_random_std` (CORL logs it with torch's unbiased std)."""
  return jnp.std(q, axis=0, ddof=1).mean()
