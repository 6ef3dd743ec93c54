"""SAC-N / EDAC losses against hand computations (src/big_batch/rl/losses.py)."""
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.rl import losses
from big_batch.scaling.learning_rate import scale_learning_rate


def test_edac_diversity_counts_each_ordered_pair_of_parallel_gradients():
  n, batch = 5, 3
  g = np.random.default_rng(0).normal(size=(batch, 4))
  # Every critic's gradient a positive multiple of the same vector: each of the N(N-1)
  # ordered pairs contributes 1, divided by N - 1: N.
  grads = np.stack([g * (j + 1.0) for j in range(n)])
  np.testing.assert_allclose(losses.edac_diversity(jnp.asarray(grads)), n, rtol=1e-6)


def test_edac_diversity_is_zero_for_orthogonal_gradients():
  eye = np.eye(3)
  grads = np.stack([np.tile(eye[j] * (j + 2.0), (7, 1)) for j in range(3)])  # (3, 7, 3)
  np.testing.assert_allclose(losses.edac_diversity(jnp.asarray(grads)), 0.0, atol=1e-7)


def test_edac_diversity_equals_the_sum_over_pairs_written_out():
  rng = np.random.default_rng(1)
  n, batch, dim = 4, 6, 3
  grads = rng.normal(size=(n, batch, dim))
  total = 0.0
  for b in range(batch):
    for i, j in itertools.permutations(range(n), 2):
      gi = grads[i, b] / (np.linalg.norm(grads[i, b]) + 1e-10)
      gj = grads[j, b] / (np.linalg.norm(grads[j, b]) + 1e-10)
      total += gi @ gj
  expected = total / batch / (n - 1)
  np.testing.assert_allclose(losses.edac_diversity(jnp.asarray(grads)), expected, rtol=1e-5)


def test_the_target_and_the_actor_loss_take_the_min_over_the_ensemble_axis():
  # Two critics, three rows: the min is per row over axis 0, not over the batch.
  next_q = jnp.array([[1.0, 5.0, -2.0], [3.0, 4.0, -1.0]])
  reward, done = jnp.array([0.5, 1.0, 0.0]), jnp.array([0.0, 0.0, 1.0])
  log_prob, alpha, gamma = jnp.array([0.1, -0.2, 0.3]), 0.5, 0.9
  target = losses.critic_target(reward, done, next_q, log_prob, alpha, gamma)
  expected = [0.5 + 0.9 * (1.0 - 0.05), 1.0 + 0.9 * (4.0 + 0.1), 0.0]
  np.testing.assert_allclose(target, expected, rtol=1e-6)
  actor = losses.actor_loss(next_q, log_prob, alpha)
  np.testing.assert_allclose(actor, np.mean([0.05 - 1.0, -0.1 - 4.0, 0.15 + 2.0]), rtol=1e-6)


def test_the_critic_loss_sums_each_critics_mean_squared_error():
  q = jnp.array([[1.0, 2.0], [0.0, 4.0]])
  target = jnp.array([1.0, 1.0])
  # Critic 0: (0 + 1) / 2; critic 1: (1 + 9) / 2; summed.
  np.testing.assert_allclose(losses.critic_loss(q, target), 0.5 + 5.0, rtol=1e-6)


def test_the_temperature_loss_and_polyak_update():
  log_prob = jnp.array([-1.0, 0.5])
  np.testing.assert_allclose(losses.temperature_loss(jnp.log(2.0), log_prob, -1.0),
                             -np.log(2.0) * np.mean([-2.0, -0.5]), rtol=1e-6)
  target = {"w": jnp.array([1.0, 2.0])}
  online = {"w": jnp.array([3.0, 6.0])}
  np.testing.assert_allclose(losses.polyak(target, online, 5e-3)["w"],
                             [0.995 * 1 + 0.005 * 3, 0.995 * 2 + 0.005 * 6], rtol=1e-6)


def test_q_random_std_is_the_unbiased_std_over_critics_averaged_over_rows():
  q = jnp.array([[1.0, 0.0], [3.0, 0.0], [5.0, 3.0]])
  expected = np.mean([np.std([1, 3, 5], ddof=1), np.std([0, 0, 3], ddof=1)])
  np.testing.assert_allclose(losses.q_std_over_ensemble(q), expected, rtol=1e-6)


def test_the_sqrt_rule_gives_0_001875_at_batch_10000():
  np.testing.assert_allclose(scale_learning_rate(3e-4, 256, 10_000, "sqrt"), 0.001875,
                             rtol=1e-9)


@pytest.mark.parametrize("batch, configured", [(5_000, 0.0013), (10_000, 0.0018),
                                               (20_000, 0.0026), (40_000, 0.0037)])
def test_lb_sacs_configured_rates_are_the_sqrt_rule_truncated(batch, configured):
  # The LB-SAC repository's batch-scaling configs write the rule's value truncated.
  scaled = scale_learning_rate(3e-4, 256, batch, "sqrt")
  assert configured <= scaled < configured + 1e-4
