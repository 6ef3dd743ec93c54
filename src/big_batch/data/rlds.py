"""RLDS episodes as transitions, for offline RL (`config.data.transitions = True`).

An RLDS episode (Ramos et al. 2021; the layout of tfds' `d4rl_mujoco_*` and of
`big_batch.rl.offline_builder`) is {'steps': [step, ...]}, each step {observation, action,
reward, discount, is_first, is_last, is_terminal}: step t holds o_t, the action a_t taken
there and the reward r_t it earned. The last step (is_last) holds the episode's final
observation; its action and reward are not a transition's. So an episode of T + 1 steps gives
the T transitions (o_t, a_t, r_t, o_{t+1}, terminal_t = is_terminal of step t + 1): a
terminal next state has no bootstrapped value, a time-limit cut (is_last without
is_terminal) keeps it.
"""
import numpy as np


KEYS = ("observation", "action", "reward", "next_observation", "terminal")


def episode_transitions(steps) -> dict:
  """The transitions of one episode's steps (a sequence of step dicts, or a tfds data source
  of them) as arrays {observation, action, reward, next_observation, terminal}."""
  steps = [steps[i] for i in range(len(steps))]
  if len(steps) < 2:
    return None
  observation = np.stack([np.asarray(s["observation"], np.float32) for s in steps])
  action = np.stack([np.asarray(s["action"], np.float32) for s in steps[:-1]])
  reward = np.asarray([s["reward"] for s in steps[:-1]], np.float32).reshape(-1)
  terminal = np.asarray([bool(s["is_terminal"]) for s in steps[1:]], np.float32)
  if any(bool(s["is_last"]) for s in steps[:-1]) or not bool(steps[-1]["is_last"]):
    raise ValueError("an RLDS episode must end with its only is_last step")
  return {"observation": observation[:-1], "action": action, "reward": reward,
          "next_observation": observation[1:], "terminal": terminal}


def transitions(source) -> dict:
  """Every episode of an RLDS data source (tfds `as_data_source()[split]`, or a sequence of
  {'steps': ...} episodes) as one dict of transition arrays, in episode order."""
  parts = [episode_transitions(source[i]["steps"]) for i in range(len(source))]
  parts = [p for p in parts if p is not None]
  if not parts:
    raise ValueError("the RLDS split has no episode with a transition")
  return {key: np.concatenate([p[key] for p in parts]) for key in KEYS}
