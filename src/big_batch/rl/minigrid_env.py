"""MiniGrid grids (Chevalier-Boisvert et al., NeurIPS 2023 D&B; the `minigrid` package) as
deterministic transition tables, so the JAX agent steps them in `lax.scan`.

`tabulate(id)` builds 'MiniGrid-<id>-v0' with a fixed seed (0), enumerates every agent
state (cell, direction) of the free cells, and asks the real simulator for the successor of
each of the three navigation actions (turn left, turn right, forward) by placing the agent
there and stepping. Reaching the goal ends the episode with reward 1 (MiniGrid pays
1 - 0.9 t / max_steps; the time discount is dropped so rewards compare across runs). The
observation of a state is MiniGrid's egocentric 7x7 partial view ('image', 7x7x3 object /
colour / state codes, scaled by 1/10): pixels under partial observability, where distinct
states can share an observation. Needs the `rl` extra (gymnasium, minigrid).
"""
import numpy as np

from big_batch.rl.tabular_envs import TabularEnv

ACTIONS = 3  # left, right, forward


def _make(env_id: str):
  try:
    import gymnasium as gym
    import minigrid  # noqa: F401 -- registers the MiniGrid environments.
  except ImportError as e:
    raise ImportError("MiniGrid environments need gymnasium and minigrid: "
                      "pip install -e '.[rl]'") from e
  env = gym.make(f"MiniGrid-{env_id}-v0")
  env.reset(seed=0)
  return env.unwrapped


def tabulate(env_id: str) -> TabularEnv:
  """The TabularEnv of 'MiniGrid-<env_id>-v0' (module docstring); horizon = its max_steps."""
  env = _make(env_id)
  start = (tuple(int(v) for v in env.agent_pos), int(env.agent_dir))
  free = [(x, y) for y in range(env.height) for x in range(env.width)
          if env.grid.get(x, y) is None or env.grid.get(x, y).can_overlap()]
  states = [(cell, d) for cell in free for d in range(4)]
  index = {s: i for i, s in enumerate(states)}
  goal_cells = {c for c in free if env.grid.get(*c) is not None and env.grid.get(*c).type == "goal"}
  next_state = np.zeros((len(states), ACTIONS), np.int32)
  reward = np.zeros((len(states), ACTIONS), np.float32)
  images = np.zeros((len(states), 7, 7, 3), np.float32)
  for i, (cell, d) in enumerate(states):
    for a in range(ACTIONS):
      env.agent_pos, env.agent_dir, env.step_count = np.array(cell), d, 0
      env.step(a)
      nxt = (tuple(int(v) for v in env.agent_pos), int(env.agent_dir))
      next_state[i, a] = index[nxt]
      reward[i, a] = float(nxt[0] in goal_cells)
    env.agent_pos, env.agent_dir = np.array(cell), d
    images[i] = env.gen_obs()["image"] / 10.0
  terminal = np.array([c in goal_cells for c, _ in states])
  cells = np.array([(y, x) for (x, y), _ in states], np.int32)
  goal = next(i for i, (c, _) in enumerate(states) if c in goal_cells)
  return TabularEnv(next_state, reward, terminal, index[start], int(env.max_steps), cells,
                    (env.height, env.width), goal, image=images)
