"""The exploring agent (rl/agent.py): the Q-learning step against a hand computation, the
updates' bookkeeping against the table, RND's error, and (slow) the bonus against
epsilon-greedy on deep sea."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.rl import agent as agent_lib
from big_batch.rl import rnd, tabular_envs


def test_q_learning_step_by_hand():
  q = jnp.array([[1.0, 0.0], [2.0, 4.0]])
  batch = {"state": jnp.array([0, 0, 1]), "action": jnp.array([0, 0, 1]),
           "next_state": jnp.array([1, 1, 0]), "reward": jnp.array([1.0, 0.0, 0.0]),
           "terminal": jnp.array([False, False, True])}
  bonus = jnp.array([0.5, 0.5, 1.0])
  new, td = agent_lib.q_learning_step(q, batch, bonus, 0.5, 0.1)
  # (0,0) twice: targets 1 + .5 + .5 * 4 = 3.5 and 0 + .5 + 2 = 2.5, TD 2.5 and 1.5, mean 2.
  # (1,1) terminal: target 0 + 1, TD -3.
  np.testing.assert_allclose(td, [2.5, 1.5, -3.0])
  np.testing.assert_allclose(new, [[1.2, 0.0], [2.0, 3.7]], rtol=1e-6)


@pytest.mark.parametrize("bonus", ["svd", "rnd"])
def test_one_update_records_the_transitions_it_made(bonus):
  env = tabular_envs.deep_sea(6)
  config = agent_lib.AgentConfig(bonus=bonus, num_envs=3, rollout=5, replay_size=128,
                                 q_batch=8, rep_batch=8, rank=4, hidden=8, q_updates=2,
                                 rep_updates=2)
  agent = agent_lib.Agent(env, config)
  state = agent.init(jax.random.key(0))
  update = jax.jit(agent.update)
  for i in range(6):
    state, metrics = update(state, jnp.arange(8) % env.num_states)
  r = {k: np.asarray(v) for k, v in state["replay"].items()}
  n = 6 * 15
  assert int(state["size"]) == n and metrics["env_steps"] == n
  assert np.array_equal(r["next_state"][:n], env.next_state[r["state"][:n], r["action"][:n]])
  assert np.array_equal(r["reward"][:n], env.reward[r["state"][:n], r["action"][:n]])
  np.testing.assert_array_equal(state["counts"], np.bincount(r["next_state"][:n],
                                                             minlength=env.num_states))
  paid = np.flatnonzero(r["reward"][:n] > 0)
  assert int(state["first_goal"]) == (paid[0] + 1 if len(paid) else -1)
  reachable = tabular_envs.reachable(env)
  assert metrics["coverage"] == pytest.approx(
      ((np.asarray(state["counts"]) > 0) & reachable).sum() / reachable.sum())
  assert np.isfinite(metrics["loss"])
  # The representation's chain: each step, plus (terminal state -> start) after each end.
  s, t, steps = agent_lib.chain_pairs(state, env.start, 128)
  ended = r["terminal"][:n]
  assert steps == n and len(s) == n + ended.sum() and ended.sum() > 0
  assert np.array_equal(s[n:], r["next_state"][:n][ended]) and np.all(t[n:] == env.start)


def test_rnd_error_falls_on_trained_observations_only():
  import optax
  target, predictor = rnd.init(jax.random.key(0), 10, hidden=32)
  obs = jnp.eye(10)
  seen = obs[:5]
  before = rnd.error(target, predictor, obs)
  tx = optax.adam(1e-2)

  def step(carry, _):
    p, opt = carry
    g = jax.grad(lambda p: rnd.error(target, p, seen).mean())(p)
    u, opt = tx.update(g, opt, p)
    return (optax.apply_updates(p, u), opt), None

  (predictor, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, 300))(
      (predictor, tx.init(predictor)))
  after = rnd.error(target, predictor, obs)
  assert after[:5].max() < 0.05 * before[:5].min()
  assert after[5:].min() > 10 * after[:5].max()


@pytest.mark.slow
def test_count_bonus_finds_the_deep_sea_reward_that_epsilon_greedy_misses():
  env = tabular_envs.deep_sea(14)
  found = {}
  for bonus in ("none", "true_count"):
    agent = agent_lib.Agent(env, agent_lib.AgentConfig(bonus=bonus, num_envs=4, rollout=4,
                                                       replay_size=20_000))

    def run(seed):
      state = agent.init(jax.random.key(seed))
      state, _ = jax.lax.scan(lambda s, k: agent.update(s, jnp.zeros(8, jnp.int32)), state,
                              jax.random.split(jax.random.key(seed), 1000))
      return state["first_goal"]

    found[bonus] = np.asarray(jax.jit(jax.vmap(run))(jnp.arange(4))) >= 0
  assert found["true_count"].all() and found["none"].sum() <= 1
