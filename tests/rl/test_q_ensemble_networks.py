"""The vectorized critic ensemble and the tanh-Gaussian actor (src/big_batch/rl/q_ensemble.py),
and the SAC-N update with N = 1 against SAC written out plainly (src/big_batch/rl/sac_n.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from big_batch.rl.q_ensemble import MLP, Actor, EnsembleCritic
from big_batch.rl.sac_n import Agent, Hyperparameters


@pytest.mark.parametrize("layer_norm, edac_init", [(False, False), (True, True)])
def test_the_ensemble_equals_n_separately_applied_critics(layer_norm, edac_init):
  n, obs_dim, act_dim = 4, 3, 2
  ensemble = EnsembleCritic(obs_dim, act_dim, num_critics=n, hidden=16, num_layers=2,
                            layer_norm=layer_norm, edac_init=edac_init, rngs=nnx.Rngs(0))
  params = nnx.state(ensemble).to_pure_dict()["q"]
  single_graph = nnx.split(MLP(obs_dim + act_dim, 1, hidden=16, num_layers=2,
                               layer_norm=layer_norm, rngs=nnx.Rngs(1)))[0]
  rng = np.random.default_rng(0)
  obs = jnp.asarray(rng.normal(size=(5, obs_dim)), jnp.float32)
  act = jnp.asarray(rng.uniform(-1, 1, size=(5, act_dim)), jnp.float32)
  q = ensemble(obs, act)
  assert q.shape == (n, 5)
  for j in range(n):
    member = nnx.merge(single_graph, nnx.State(jax.tree.map(lambda p: p[j], params)))
    np.testing.assert_allclose(q[j], member(jnp.concatenate([obs, act], -1))[:, 0],
                               rtol=1e-5, atol=1e-6)
  # The critics differ (independent initializations).
  assert float(jnp.abs(q[0] - q[1]).max()) > 1e-4
  if edac_init:
    assert np.allclose(params["hidden"][0]["bias"], 0.1)
    assert float(jnp.abs(params["out"]["kernel"]).max()) <= 3e-3


def test_the_tanh_gaussian_log_density_is_the_change_of_variables():
  actor = Actor(3, 2, max_action=2.0, hidden=8, num_layers=1, rngs=nnx.Rngs(0))
  obs = jnp.asarray(np.random.default_rng(1).normal(size=(6, 3)), jnp.float32)
  key = jax.random.key(3)
  action, log_prob = actor(obs, key)
  mean, log_std = (np.asarray(x, np.float64) for x in actor.distribution(obs))
  noise = np.asarray(jax.random.normal(key, mean.shape), np.float64)
  x = mean + np.exp(log_std) * noise
  gaussian = -0.5 * ((x - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
  expected = (gaussian - np.log(1 - np.tanh(x) ** 2)).sum(-1)
  np.testing.assert_allclose(log_prob, expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(action, 2.0 * np.tanh(x), rtol=1e-5)
  np.testing.assert_allclose(actor.deterministic(obs), 2.0 * np.tanh(mean), rtol=1e-5)


def test_log_std_is_clipped_to_minus_5_and_2():
  actor = Actor(2, 1, max_action=1.0, hidden=4, num_layers=1, rngs=nnx.Rngs(0))
  actor.trunk.out.kernel[...] = jnp.zeros_like(actor.trunk.out.kernel[...])
  for bias, expected in ((10.0, 2.0), (-10.0, -5.0), (0.5, 0.5)):
    actor.trunk.out.bias[...] = jnp.array([0.0, bias])
    np.testing.assert_allclose(actor.distribution(jnp.ones((1, 2)))[1], [[expected]])


def _sac_agent(num_critics=1, eta=0.0):
  return Agent(3, 2, 1.0, Hyperparameters(num_critics=num_critics, hidden=16, num_layers=2,
                                          eta=eta, gamma=0.9, tau=0.1),
               optax.adam(1e-2), optax.adam(1e-2), optax.adam(1e-2))


def _batch(seed=0, rows=8):
  rng = np.random.default_rng(seed)
  return {"observation": jnp.asarray(rng.normal(size=(rows, 3)), jnp.float32),
          "action": jnp.asarray(rng.uniform(-1, 1, size=(rows, 2)), jnp.float32),
          "reward": jnp.asarray(rng.normal(size=rows), jnp.float32),
          "next_observation": jnp.asarray(rng.normal(size=(rows, 3)), jnp.float32),
          "terminal": jnp.asarray(rng.integers(0, 2, size=rows), jnp.float32)}


def test_target_entropy_defaults_to_minus_action_dim():
  assert _sac_agent().target_entropy == -2.0


def test_sac_n_with_one_critic_is_sac_with_one_target_critic():
  """One update of N = 1 against SAC's three losses written out plainly with a single Q."""
  agent = _sac_agent()
  state = agent.init(jax.random.key(0))
  batch = _batch()
  new_state, _ = jax.jit(agent.update)(state, batch)

  @jax.jit
  def plain_sac(state, batch):
    adam = optax.adam(1e-2)
    key, alpha_key, actor_key, next_key, _ = jax.random.split(
        jax.random.wrap_key_data(state["key"]), 5)
    q1 = lambda critic, s, a: agent.q(critic, s, a)[0]  # noqa: E731  (the one critic)
    s, a, r, s2, d = (batch[k] for k in ("observation", "action", "reward", "next_observation",
                                          "terminal"))
    # Temperature: J(α) = E[−log α (log π(a|s) − action_dim)].
    _, logp = agent.act(state["actor"], s, alpha_key)
    grad = jax.grad(lambda la: jnp.mean(-la * (logp - 2.0)))(state["log_alpha"])
    log_alpha = state["log_alpha"] + adam.update(grad, adam.init(state["log_alpha"]))[0]
    alpha = jnp.exp(log_alpha)
    # Actor: J(π) = E[α log π(ã|s) − Q(s, ã)].
    def actor_objective(actor):
      new_a, lp = agent.act(actor, s, actor_key)
      return jnp.mean(alpha * lp - q1(state["critic"], s, new_a))
    grads = jax.grad(actor_objective)(state["actor"])
    actor = optax.apply_updates(state["actor"], adam.update(grads, adam.init(state["actor"]))[0])
    # Critic: J(Q) = E[(Q(s, a) − r − γ (1 − d)(Q̄(s', a') − α log π(a'|s')))²].
    a2, lp2 = agent.act(actor, s2, next_key)
    y = r + 0.9 * (1 - d) * (q1(state["target_critic"], s2, a2) - alpha * lp2)
    grads = jax.grad(lambda c: jnp.mean((q1(c, s, a) - y) ** 2))(state["critic"])
    critic = optax.apply_updates(state["critic"],
                                 adam.update(grads, adam.init(state["critic"]))[0])
    target = jax.tree.map(lambda t, c: 0.9 * t + 0.1 * c, state["target_critic"], critic)
    return log_alpha, actor, critic, target, key

  log_alpha, actor, critic, target, key = plain_sac(state, batch)
  close = lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)  # noqa: E731
  close(new_state["log_alpha"], log_alpha)
  jax.tree.map(close, new_state["actor"], actor)
  jax.tree.map(close, new_state["critic"], critic)
  jax.tree.map(close, new_state["target_critic"], target)
  np.testing.assert_array_equal(new_state["key"], jax.random.key_data(key))


def test_k_updates_in_one_scan_equal_k_single_updates():
  agent = _sac_agent(num_critics=3)
  state = agent.init(jax.random.key(1))
  batches = [_batch(seed) for seed in range(3)]
  looped, update = state, jax.jit(agent.update)
  for batch in batches:
    looped, _ = update(looped, batch)
  scanned, _ = jax.jit(agent.updates)(state, jax.tree.map(lambda *b: jnp.stack(b), *batches))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5),
               scanned, looped)
