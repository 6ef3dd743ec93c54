"""Deterministic tabular environments as transition tables, stepped by pure JAX functions.

An environment is a `TabularEnv` of NumPy arrays: `next_state[s, a]`, `reward[s, a]`,
`terminal[s]`, one start state, a horizon and the observation of every state
(`observations(env, kind)`: one-hot, coordinates or a rendered image). `step` and `reset`
are pure and vmap over environments, so an agent steps many copies in one `lax.scan`.

- `four_rooms()`: Sutton, Precup & Singh (1999)'s 11x11 four-rooms grid (104 cells), start in
  the top-left room, goal (reward 1, terminal) in the bottom-right corner.
- `deep_sea(n)`: Osband et al. (2019, bsuite)'s n x n deep sea: each step descends a row and
  moves left or right, which action is "right" is drawn once per cell (seed 0); reward 1 at
  the bottom-right cell only (the 0.01/n move cost omitted), so a uniform policy reaches it
  with probability 2^-(n-1) per episode.
- MiniGrid grids become the same tables in `minigrid_env.py`.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

OBSERVATIONS = ("one_hot", "coordinates", "pixels")

FOUR_ROOMS = """\
xxxxxxxxxxxxx
x     x     x
x     x     x
x           x
x     x     x
x     x     x
xx xxxx     x
x     xxx xxx
x     x     x
x     x     x
x           x
x     x     x
xxxxxxxxxxxxx"""


class TabularEnv(NamedTuple):
  """A deterministic episodic MDP; `cells[s]` is (row, column) of state s in a `shape` grid,
  `image[s]` its rendering ([H, W] float32 or None: drawn from `cells`)."""
  next_state: np.ndarray  # [S, A] int32
  reward: np.ndarray  # [S, A] float32
  terminal: np.ndarray  # [S] bool: the episode ends on entering it
  start: int
  horizon: int
  cells: np.ndarray  # [S, 2] int32
  shape: tuple
  goal: int
  image: np.ndarray | None = None

  @property
  def num_states(self) -> int:
    return self.next_state.shape[0]

  @property
  def num_actions(self) -> int:
    return self.next_state.shape[1]


def grid_env(layout: str, start: tuple, goal: tuple, horizon: int) -> TabularEnv:
  """A 4-action grid world ('x' walls) whose free cells are the states; bumping stays put."""
  rows = layout.splitlines()
  free = [(r, c) for r, line in enumerate(rows) for c, ch in enumerate(line) if ch != "x"]
  index = {cell: i for i, cell in enumerate(free)}
  moves = ((-1, 0), (0, 1), (1, 0), (0, -1))
  next_state = np.array([[index.get((r + dr, c + dc), index[(r, c)]) for dr, dc in moves]
                         for r, c in free], np.int32)
  g = index[goal]
  reward = (next_state == g).astype(np.float32)
  terminal = np.zeros(len(free), bool)
  terminal[g] = True
  return TabularEnv(next_state, reward, terminal, index[start], horizon,
                    np.array(free, np.int32), (len(rows), len(rows[0])), g)


def four_rooms(horizon: int = 200) -> TabularEnv:
  """The four-rooms grid: start (1, 1), goal (11, 11), episodes of `horizon` steps."""
  return grid_env(FOUR_ROOMS, (1, 1), (11, 11), horizon)


def deep_sea(n: int = 10, seed: int = 0) -> TabularEnv:
  """The n x n deep sea (module docstring); state r * n + c, episodes of n steps."""
  right = np.random.default_rng(seed).integers(0, 2, size=(n, n))
  next_state = np.zeros((n * n, 2), np.int32)
  for r in range(n):
    for c in range(n):
      down = min(r + 1, n - 1)
      for a in range(2):
        col = min(c + 1, n - 1) if a == right[r, c] else max(c - 1, 0)
        next_state[r * n + c, a] = down * n + col
  goal = n * n - 1
  reward = (next_state == goal).astype(np.float32)
  terminal = np.zeros(n * n, bool)
  terminal[(n - 1) * n:] = True
  cells = np.array([(r, c) for r in range(n) for c in range(n)], np.int32)
  return TabularEnv(next_state, reward, terminal, 0, n - 1, cells, (n, n), goal)


ENVIRONMENTS = ("four_rooms", "deep_sea_10", "deep_sea_16", "deep_sea_20")


def make(name: str) -> TabularEnv:
  """The environment by name: 'four_rooms', 'deep_sea_<n>', or 'minigrid_<id>' (MiniGrid's
  'MiniGrid-<id>-v0' as a table, minigrid_env.py; needs the `rl` extra)."""
  if name == "four_rooms":
    return four_rooms()
  if name.startswith("deep_sea_") and name[9:].isdigit():
    return deep_sea(int(name[9:]))
  if name.startswith("minigrid_"):
    from big_batch.rl import minigrid_env  # Needs gymnasium and minigrid.
    return minigrid_env.tabulate(name[9:])
  raise ValueError(f"environment {name!r} is not four_rooms, deep_sea_<n> or minigrid_<id>")


def reachable(env: TabularEnv) -> np.ndarray:
  """[S] bool: the states reachable from the start (coverage is measured over these)."""
  seen = np.zeros(env.num_states, bool)
  frontier = [env.start]
  seen[env.start] = True
  while frontier:
    s = frontier.pop()
    if env.terminal[s] and s != env.start:
      continue
    for t in env.next_state[s]:
      if not seen[t]:
        seen[t] = True
        frontier.append(int(t))
  return seen


def observations(env: TabularEnv, kind: str) -> np.ndarray:
  """[S, d] float32 observation of every state: one-hot, (row, column) scaled to [0, 1], or
  the flattened image (the grid with the agent's cell at 1, or `env.image`)."""
  if kind == "one_hot":
    return np.eye(env.num_states, dtype=np.float32)
  if kind == "coordinates":
    return (env.cells / np.maximum(np.array(env.shape) - 1, 1)).astype(np.float32)
  if kind == "pixels":
    if env.image is not None:
      return env.image.reshape(env.num_states, -1).astype(np.float32)
    images = np.zeros((env.num_states, *env.shape), np.float32)
    images[np.arange(env.num_states), env.cells[:, 0], env.cells[:, 1]] = 1.0
    return images.reshape(env.num_states, -1)
  raise ValueError(f"observation kind {kind!r} is not one of {OBSERVATIONS}")


def tables(env: TabularEnv) -> dict:
  """The environment's arrays as jnp arrays (for use inside jitted functions)."""
  return {"next_state": jnp.asarray(env.next_state), "reward": jnp.asarray(env.reward),
          "terminal": jnp.asarray(env.terminal)}


def step(tab: dict, start: int, horizon: int, state, t, action):
  """One step of one environment: (next_state, reward, done, state_after, t_after), where
  state_after is the start state when the episode ended (on a terminal state or at the
  horizon) and t counts steps in the episode."""
  next_state = tab["next_state"][state, action]
  reward = tab["reward"][state, action]
  done = tab["terminal"][next_state] | (t + 1 >= horizon)
  state_after = jnp.where(done, start, next_state)
  return next_state, reward, done, state_after, jnp.where(done, 0, t + 1)


def behaviour_transitions(env: TabularEnv, policy, rng, num_envs: int, steps: int):
  """(states, actions, next_states), each [num_envs * steps], of `num_envs` copies following
  the fixed behaviour policy `policy` ([A] or [S, A] action probabilities) for `steps` steps
  (one lax.scan over vmapped environments; episodes restart at the start state)."""
  tab = tables(env)
  logits = jnp.log(jnp.broadcast_to(jnp.asarray(policy, jnp.float32),
                                    (env.num_states, env.num_actions)))

  def one(carry, key):
    s, t = carry
    a = jax.random.categorical(key, logits[s])
    nxt, _, _, s_after, t_after = step(tab, env.start, env.horizon, s, t, a)
    return (s_after, t_after), (s, a, nxt)

  init = (jnp.full((num_envs,), env.start, jnp.int32), jnp.zeros((num_envs,), jnp.int32))
  _, (s, a, nxt) = jax.lax.scan(one, init, jax.random.split(rng, steps))
  return s.reshape(-1), a.reshape(-1), nxt.reshape(-1)
