"""Policy evaluation in the real environment and the D4RL normalized score.

`normalized_score(env_name, returns)` = 100 · (R − R_min) / (R_max − R_min) with D4RL's
reference returns (d4rl `infos.py`, REF_MIN_SCORE / REF_MAX_SCORE: a random policy and an
expert SAC policy) for halfcheetah, hopper, walker2d and ant. Pendulum has no D4RL entry; its
constants are ours: R_min = −1215.5, the mean return of the uniform random policy over 100
seeded episodes (seeds 0 and 1, 50 each, gymnasium 1.x Pendulum-v1), and R_max = 0, the
reward's upper bound (upright, at rest, no torque). Gymnasium's v5 MuJoCo tasks differ from
D4RL's mujoco-py v2 in details, so scores compare with the papers' only approximately.

`rollout` runs a deterministic policy for one episode in each of `episodes` copies of the
environment (`gymnasium.make_vec`), seeded, and returns their returns.
"""
import numpy as np

# env -> (R_min, R_max).
REFERENCE_RETURNS = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "pendulum": (-1215.5, 0.0),
}


def env_family(env_name: str) -> str:
  """'halfcheetah' for 'HalfCheetah-v5', 'halfcheetah-medium-v2' or 'halfcheetah'."""
  family = env_name.split("-")[0].lower().replace("_", "")
  if family not in REFERENCE_RETURNS:
    raise ValueError(f"env_name={env_name!r} has no reference returns; known: "
                     f"{sorted(REFERENCE_RETURNS)}")
  return family


def normalized_score(env_name: str, returns):
  """100 · (R − R_min) / (R_max − R_min), elementwise (D4RL's `get_normalized_score` × 100)."""
  low, high = REFERENCE_RETURNS[env_family(env_name)]
  return 100.0 * (np.asarray(returns, np.float64) - low) / (high - low)


def make_vector_env(env_name: str, num_envs: int):
  """`num_envs` synchronous copies of the gymnasium environment `env_name`."""
  try:
    import gymnasium as gym  # noqa: PLC0415 -- the optional [rl] extra.
  except ImportError as e:
    raise ImportError("big_batch.rl needs gymnasium: pip install -e '.[rl]'") from e
  return gym.make_vec(env_name, num_envs=num_envs, vectorization_mode="sync")


def rollout(policy, env_name: str, episodes: int, seed: int) -> np.ndarray:
  """The returns of one episode in each of `episodes` environments seeded seed, seed+1, ...

  policy(observations [episodes, obs_dim] float32) -> actions [episodes, action_dim].
  """
  env = make_vector_env(env_name, episodes)
  try:
    observation, _ = env.reset(seed=seed)
    returns = np.zeros(episodes)
    running = np.ones(episodes, bool)
    while running.any():
      action = np.asarray(policy(observation.astype(np.float32)), np.float64)
      observation, reward, terminated, truncated, _ = env.step(action)
      returns += np.where(running, reward, 0.0)
      running &= ~(terminated | truncated)
    return returns
  finally:
    env.close()
