"""The REINFORCE-family estimators on a tiny autoregressive policy (vocabulary 4, length 3)
whose exact gradient ∇ E_π[r] is a sum over all 64 responses; PPO's clipped and value losses
against hand computations."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.rlhf import estimators, returns

VOCAB, LENGTH = 4, 3
ALL = jnp.asarray(list(itertools.product(range(VOCAB), repeat=LENGTH)), jnp.int32)  # [64, 3]


def log_probs(theta, tokens):
  """log π(a_t | a_{t−1}) of a tabular policy θ[t, previous token (VOCAB = start), VOCAB]."""
  previous = jnp.concatenate([jnp.full_like(tokens[:, :1], VOCAB), tokens[:, :-1]], axis=1)
  logits = theta[jnp.arange(LENGTH)[None, :], previous]
  return jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], -1)[..., 0]


def reward_of(table, tokens):
  return table[jnp.ravel_multi_index(tuple(tokens.T), (VOCAB,) * LENGTH, mode="clip")]


def sample(theta, key, n):
  tokens = []
  for t in range(LENGTH):
    previous = jnp.full((n,), VOCAB) if t == 0 else tokens[-1]
    key, sub = jax.random.split(key)
    tokens.append(jax.random.categorical(sub, theta[t, previous]))
  return jnp.stack(tokens, 1).astype(jnp.int32)


def greedy(theta):
  tokens, previous = [], VOCAB
  for t in range(LENGTH):
    previous = int(jnp.argmax(theta[t, previous]))
    tokens.append(previous)
  return jnp.asarray([tokens], jnp.int32)


@pytest.fixture(scope="module")
def problem():
  theta = jax.random.normal(jax.random.key(0), (LENGTH, VOCAB + 1, VOCAB))
  table = jax.random.normal(jax.random.key(1), (VOCAB ** LENGTH,)) + 3.0  # offset: baselines matter
  exact = jax.grad(lambda th: (jnp.exp(log_probs(th, ALL).sum(1)) * table).sum())(theta)
  return theta, table, exact


def per_sample_gradients(theta, tokens, advantages):
  """g_i = −T ∇ L(θ) of the one-sample loss with β = 0, γ = 1: Σ_t ∇ log π(a_t) (r − b)."""
  mask = jnp.ones(tokens.shape, jnp.float32)

  def one(tok, adv):
    tok, m = tok[None], mask[:1]
    lp = log_probs(theta, tok)
    g = returns.kl_shaped_returns(lp, lp, m, adv[None], kl_coef=0.0, gamma=1.0)

    def loss(th):
      return estimators.policy_gradient_loss(log_probs(th, tok), jax.lax.stop_gradient(g), m)
    return -LENGTH * jax.grad(loss)(theta)

  return jax.vmap(one)(tokens, advantages)


def assert_unbiased(grads, exact):
  mean = grads.mean(0)
  stderr = grads.std(0) / np.sqrt(grads.shape[0])
  np.testing.assert_array_less(np.abs(mean - exact), 5 * stderr + 1e-4)
  assert np.linalg.norm(mean - exact) < 0.1 * np.linalg.norm(exact)


@pytest.mark.parametrize("estimator", ["remax", "reinforce", "moving_mean", "rloo"])
def test_monte_carlo_mean_equals_exact_gradient(problem, estimator):
  theta, table, exact = problem
  n, k = 40000, 2
  tokens = sample(theta, jax.random.key(2), n)
  rewards = reward_of(table, tokens)
  greedy_reward = reward_of(table, greedy(theta))
  advantages, _ = estimators.baselines(
      estimator, rewards, greedy_rewards=jnp.broadcast_to(greedy_reward, rewards.shape),
      moving_mean=jnp.asarray(2.5), group_size=k)
  assert_unbiased(per_sample_gradients(theta, tokens, advantages), exact)


def test_remax_gradient_is_zero_when_the_sample_is_greedy(problem):
  theta, table, _ = problem
  tokens = greedy(theta)
  r = reward_of(table, tokens)
  advantage, _ = estimators.baselines("remax", r, greedy_rewards=r)
  # With the KL term, and the reference equal to the policy (the start of alignment).
  mask = jnp.ones(tokens.shape)
  lp = log_probs(theta, tokens)
  g = returns.kl_shaped_returns(lp, lp, mask, advantage, kl_coef=0.05, gamma=0.99)
  grad = jax.grad(lambda th: estimators.policy_gradient_loss(log_probs(th, tokens), g, mask))(
      theta)
  assert float(jnp.abs(grad).max()) == 0.0


def test_remax_variance_below_no_baseline_with_prompt_offsets(problem):
  """Rewards offset by +3 everywhere: subtracting the greedy reward removes the offset."""
  theta, table, _ = problem
  tokens = sample(theta, jax.random.key(3), 4000)
  r = reward_of(table, tokens)
  greedy_r = jnp.broadcast_to(reward_of(table, greedy(theta)), r.shape)
  total_variance = {}
  for name in ("reinforce", "remax"):
    adv, _ = estimators.baselines(name, r, greedy_rewards=greedy_r)
    total_variance[name] = float(per_sample_gradients(theta, tokens, adv).var(0).sum())
  assert total_variance["remax"] < 0.5 * total_variance["reinforce"]


def reference_returns(kl_divergence, reward_score, mask, gamma, clip=5.0):
  """The loop of `compute_returns` in liziniu/ReMax remax_trainer.py (start = 0)."""
  out = np.zeros_like(kl_divergence)
  for j in range(kl_divergence.shape[0]):
    cumulative_reward = float(np.clip(reward_score[j], -clip, clip))
    for i in reversed(range(int(mask[j].sum()))):
      cumulative_kl = kl_divergence[j, i]
      cumulative_reward *= gamma
      out[j, i] += cumulative_kl + cumulative_reward
  return out


def test_kl_shaped_returns_equal_the_reference_loop():
  rng = np.random.default_rng(0)
  lp, ref = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], np.float32)
  reward = np.array([7.0, -0.5, -9.0])  # clipped to 5 and −5
  beta, gamma = 0.05, 0.9
  got = returns.kl_shaped_returns(jnp.asarray(lp), jnp.asarray(ref), jnp.asarray(mask),
                                  jnp.asarray(reward), kl_coef=beta, gamma=gamma)
  want = reference_returns(beta * (ref - lp), reward, mask, gamma)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # By hand: last token of row 0 gets γ¹·5 plus its own KL term only (no accumulation).
  assert got[0, 4] == pytest.approx(beta * (ref[0, 4] - lp[0, 4]) + gamma * 5.0, rel=1e-5)
  assert got[0, 0] == pytest.approx(beta * (ref[0, 0] - lp[0, 0]) + gamma ** 5 * 5.0, rel=1e-5)


def test_baselines_by_hand():
  r = jnp.asarray([1.0, 3.0, 10.0, 14.0])
  adv, b = estimators.baselines("rloo", r, group_size=2)
  np.testing.assert_allclose(b, [3.0, 1.0, 14.0, 10.0])
  np.testing.assert_allclose(adv, [-2.0, 2.0, -4.0, 4.0])
  adv, b = estimators.baselines("group_mean", r, group_size=2, normalize=True)
  np.testing.assert_allclose(b, [2.0, 2.0, 12.0, 12.0])
  np.testing.assert_allclose(adv, [-1.0, 1.0, -1.0, 1.0], rtol=1e-5)
  assert float(estimators.update_moving_mean(jnp.asarray(1.0), r, 0.9)) == pytest.approx(
      0.9 + 0.1 * 7.0)


def test_ppo_rewards_and_gae_by_hand():
  lp = jnp.asarray([[-1.0, -2.0, -0.5]])
  ref = jnp.asarray([[-1.5, -2.0, -1.0]])
  mask = jnp.asarray([[1.0, 1.0, 0.0]])
  rho = returns.ppo_rewards(lp, ref, mask, jnp.asarray([2.0]), kl_coef=0.1)
  # ρ_0 = −0.1·(−1 + 1.5) = −0.05; ρ_1 = 0 + reward 2 at the last token; ρ_2 masked.
  np.testing.assert_allclose(rho, [[-0.05, 2.0, 0.0]], atol=1e-7)
  values = jnp.asarray([[0.5, 1.0, 9.0]])
  gamma, lam = 0.9, 0.8
  adv, ret = returns.gae(rho, values, mask, gamma=gamma, lam=lam)
  delta1 = 2.0 + gamma * 0.0 - 1.0                 # V_2 is past the end: 0
  delta0 = -0.05 + gamma * 1.0 - 0.5
  np.testing.assert_allclose(adv, [[delta0 + gamma * lam * delta1, delta1, 0.0]], rtol=1e-6)
  np.testing.assert_allclose(ret, [[delta0 + gamma * lam * delta1 + 0.5, delta1 + 1.0, 0.0]],
                             rtol=1e-6)


def test_ppo_clipped_and_value_losses_by_hand():
  old = jnp.log(jnp.asarray([[0.5, 0.5, 0.5]]))
  new = jnp.log(jnp.asarray([[0.8, 0.3, 0.55]]))   # ratios 1.6, 0.6, 1.1
  adv = jnp.asarray([[1.0, -2.0, 3.0]])
  mask = jnp.asarray([[1.0, 1.0, 1.0]])
  loss = estimators.ppo_clipped_loss(new, old, adv, mask, clip=0.2)
  # max(−A ρ, −A clip(ρ)): −1·1.2 (clipped), −(−2)·0.8 = 1.6 (clipped), −3·1.1 (inside).
  assert float(loss) == pytest.approx((-1.2 + 1.6 - 3.3) / 3, rel=1e-5)
  v, v_old, r = jnp.asarray([[1.0, 0.0]]), jnp.asarray([[0.5, 0.1]]), jnp.asarray([[2.0, 1.0]])
  got = estimators.value_loss(v, v_old, r, jnp.ones((1, 2)), clip=0.2)
  # token 0: max((1−2)², (0.7−2)²) = 1.69; token 1: max((0−1)², (0−1)²) = 1.
  assert float(got) == pytest.approx(0.5 * (1.69 + 1.0) / 2, rel=1e-5)
