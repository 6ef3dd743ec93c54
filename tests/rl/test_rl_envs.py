"""The tabular environments (rl/tabular_envs.py): layouts, dynamics against hand-worked
paths, the vmapped stepping against a Python loop, and MiniGrid's tables against the real
gymnasium environment."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.rl import tabular_envs

UP, RIGHT, DOWN, LEFT = range(4)


def test_four_rooms_layout_and_walls():
  env = tabular_envs.four_rooms()
  assert env.num_states == 104 and tabular_envs.reachable(env).all()
  start = env.start
  assert tuple(env.cells[start]) == (1, 1) and tuple(env.cells[env.goal]) == (11, 11)
  assert env.next_state[start, UP] == start and env.next_state[start, LEFT] == start
  assert tuple(env.cells[env.next_state[start, RIGHT]]) == (1, 2)
  # (3, 5) -> (3, 6) is the hallway between the top rooms; (1, 5) -> (1, 6) is a wall.
  index = {tuple(c): i for i, c in enumerate(env.cells)}
  assert tuple(env.cells[env.next_state[index[(3, 5)], RIGHT]]) == (3, 6)
  assert env.next_state[index[(1, 5)], RIGHT] == index[(1, 5)]
  assert env.terminal.sum() == 1 and env.terminal[env.goal]


def test_deep_sea_pays_only_the_all_right_path():
  n = 6
  env = tabular_envs.deep_sea(n)
  right = np.array([[env.next_state[r * n + c, a] % n > c or (c == n - 1 and
                     env.next_state[r * n + c, a] % n == c) for a in range(2)]
                    for r in range(n) for c in range(n)])
  s, total = env.start, 0.0
  for _ in range(n - 1):  # Always the action that moves right: reward 1 at the end.
    a = int(np.argmax(right[s]))
    total += env.reward[s, a]
    s = env.next_state[s, a]
  assert total == 1.0 and s == env.goal and env.terminal[s]
  assert tabular_envs.reachable(env).sum() == n * (n + 1) // 2
  # Any other path ends elsewhere on the bottom row, unpaid.
  rng = np.random.default_rng(0)
  for _ in range(20):
    s, total, path = env.start, 0.0, []
    for _ in range(n - 1):
      a = int(rng.integers(2))
      path.append(right[s, a])
      total += env.reward[s, a]
      s = env.next_state[s, a]
    assert total == float(all(path))


def test_vmapped_steps_match_a_python_loop():
  env = tabular_envs.deep_sea(5)
  tab = tabular_envs.tables(env)
  actions = np.random.default_rng(1).integers(0, 2, size=(12, 3))
  s, t = jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32)
  ref_s, ref_t = [0, 0, 0], [0, 0, 0]
  for a in actions:
    nxt, r, done, s, t = jax.vmap(
        lambda s, t, a: tabular_envs.step(tab, env.start, env.horizon, s, t, a))(s, t,
                                                                                   jnp.asarray(a))
    for i in range(3):
      expect = env.next_state[ref_s[i], a[i]]
      assert nxt[i] == expect and r[i] == env.reward[ref_s[i], a[i]]
      ended = env.terminal[expect] or ref_t[i] + 1 >= env.horizon
      assert bool(done[i]) == ended
      ref_s[i], ref_t[i] = (env.start, 0) if ended else (expect, ref_t[i] + 1)
    assert list(np.asarray(s)) == ref_s and list(np.asarray(t)) == ref_t


def test_observations():
  env = tabular_envs.four_rooms()
  assert np.array_equal(tabular_envs.observations(env, "one_hot"), np.eye(104))
  coords = tabular_envs.observations(env, "coordinates")
  np.testing.assert_allclose(coords[env.goal], [11 / 12, 11 / 12])
  pixels = tabular_envs.observations(env, "pixels").reshape(104, 13, 13)
  assert np.all(pixels.sum((1, 2)) == 1) and pixels[env.start, 1, 1] == 1


def test_behaviour_transitions_follow_the_table_and_the_policy():
  env = tabular_envs.four_rooms()
  s, a, t = (np.asarray(x) for x in tabular_envs.behaviour_transitions(
      env, (0.7, 0.1, 0.1, 0.1), jax.random.key(0), 8, 500))
  assert np.array_equal(t, env.next_state[s, a])
  np.testing.assert_allclose(np.bincount(a, minlength=4) / len(a), [0.7, 0.1, 0.1, 0.1],
                             atol=0.02)


def test_minigrid_tables_match_the_gymnasium_environment():
  """A random walk in the table and in MiniGrid-Empty-8x8-v0 visit the same (cell, direction)
  states (state 4 * cell + direction), end together, and see the same partial view."""
  gym = pytest.importorskip("gymnasium")
  pytest.importorskip("minigrid")
  env = tabular_envs.make("minigrid_Empty-8x8")
  assert env.num_states == 4 * 36 and env.num_actions == 3
  obs = tabular_envs.observations(env, "pixels")
  assert obs.shape == (env.num_states, 147)
  real = gym.make("MiniGrid-Empty-8x8-v0")
  rng = np.random.default_rng(0)
  for _ in range(3):
    image = real.reset(seed=0)[0]["image"]
    u, s = real.unwrapped, env.start
    for _ in range(200):
      assert tuple(env.cells[s]) == (u.agent_pos[1], u.agent_pos[0]) and s % 4 == u.agent_dir
      np.testing.assert_allclose(obs[s], image.reshape(-1) / 10.0)
      a = int(rng.choice(3, p=[0.2, 0.2, 0.6]))
      out, reward, terminated, _, _ = real.step(a)
      image = out["image"]
      assert env.reward[s, a] == float(reward > 0)
      s = env.next_state[s, a]
      assert env.terminal[s] == terminated
      if terminated:
        break
