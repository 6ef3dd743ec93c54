"""Behaviour policies and their data, generated on this machine (D4RL's recipe, Fu et al. 2020,
§5, at a budget a CPU affords): online SAC in a gymnasium environment, snapshots of its actor,
and episodes recorded with them.

`train_online` runs SAC (`sac_n.Agent` with N = 2 critics, clipped double Q; 2 x 256 ReLU
layers, Adam 3e-4, batch 256, γ 0.99, τ 5e-3, one update per environment step after
`start_steps` uniform random steps; the updates of `chunk` steps run as one jitted scan).
Every `snapshot_every` steps it evaluates the deterministic policy (`evaluate.rollout`),
stores the actor as a snapshot and checkpoints itself (agent state, replay, random states),
printing progress with an ETA; a rerun resumes from the last checkpoint (the environment
starts a new episode there). The data sets of one run:

  random         the uniform random policy;
  medium         the snapshot whose normalized score is nearest a third of the best one's;
  medium-replay  the online run's own episodes up to the medium snapshot;
  expert         the best snapshot (the budget's best policy: what `expert` means here).

`collect` records episodes of a policy (actions sampled from the stochastic actor) until a
number of transitions, as RLDS episodes: T + 1 steps for T transitions, the last holding the
final observation (data/rlds.py).
"""
import dataclasses
import hashlib
import json
import os
import pickle
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from big_batch.rl import evaluate
from big_batch.rl.sac_n import Agent, Hyperparameters

ENV_IDS = {"pendulum": "Pendulum-v1", "halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5",
           "walker2d": "Walker2d-v5"}
KINDS = ("random", "medium", "medium-replay", "expert")


@dataclasses.dataclass(frozen=True)
class Budget:
  """How much online training and data one environment gets."""
  online_steps: int
  start_steps: int
  snapshot_every: int
  transitions: int  # Per data set (medium-replay: what the run collected up to medium).
  eval_episodes: int = 5
  chunk: int = 50
  batch_size: int = 256
  hidden: int = 256
  num_layers: int = 2

  def key(self) -> str:
    return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
                        ).hexdigest()[:8]


BUDGETS = {
    "pendulum": Budget(online_steps=12_000, start_steps=1_000, snapshot_every=1_000,
                       transitions=20_000, eval_episodes=10),
    "halfcheetah": Budget(online_steps=25_000, start_steps=5_000, snapshot_every=2_500,
                          transitions=50_000),
    "hopper": Budget(online_steps=100_000, start_steps=5_000, snapshot_every=5_000,
                     transitions=100_000),
    "walker2d": Budget(online_steps=100_000, start_steps=5_000, snapshot_every=5_000,
                       transitions=100_000),
}
# A few minutes' budget for smoke tests and `:quick` configs (the policies are weak).
QUICK = Budget(online_steps=2_000, start_steps=500, snapshot_every=500, transitions=2_000,
               eval_episodes=4, hidden=64)


def make_env(env_id: str):
  try:
    import gymnasium as gym  # noqa: PLC0415 -- the optional [rl] extra.
  except ImportError as e:
    raise ImportError("big_batch.rl needs gymnasium and MuJoCo: pip install -e '.[rl]'") from e
  return gym.make(env_id)


def online_agent(env, budget: Budget) -> Agent:
  hp = Hyperparameters(num_critics=2, hidden=budget.hidden, num_layers=budget.num_layers)
  return Agent(env.observation_space.shape[0], env.action_space.shape[0],
               float(env.action_space.high[0]), hp, optax.adam(3e-4), optax.adam(3e-4),
               optax.adam(3e-4))


def _say(message):
  # stderr: data generation runs inside tfds' download_and_prepare, whose stdout the data
  # loader silences (data/datasets.py).
  print(message, file=sys.stderr, flush=True)


def train_online(family: str, budget: Budget, seed: int, directory: str) -> list[dict]:
  """Online SAC on `ENV_IDS[family]` (module docstring); returns the snapshots
  [{'step', 'return', 'score', 'path'}], resuming from `directory`'s checkpoint."""
  os.makedirs(directory, exist_ok=True)
  env_id = ENV_IDS[family]
  env = make_env(env_id)
  agent = online_agent(env, budget)
  act = jax.jit(agent.act)
  greedy = jax.jit(agent.greedy)
  updates = jax.jit(agent.updates, donate_argnums=0)
  checkpoint_path = os.path.join(directory, "online.pkl")
  n, obs_dim, act_dim = budget.online_steps, env.observation_space.shape[0], env.action_space.shape[0]
  if os.path.exists(checkpoint_path):
    with open(checkpoint_path, "rb") as f:
      saved = pickle.load(f)
    state = jax.tree.map(jnp.asarray, saved["state"])
    replay, step, snapshots = saved["replay"], saved["step"], saved["snapshots"]
    rng = np.random.default_rng()
    rng.bit_generator.state = saved["rng"]
    _say(f"online SAC on {env_id}: resuming at step {step} from {checkpoint_path}")
  else:
    state = agent.init(jax.random.key(seed))
    replay = {"observation": np.zeros((n, obs_dim), np.float32),
              "action": np.zeros((n, act_dim), np.float32), "reward": np.zeros(n, np.float32),
              "next_observation": np.zeros((n, obs_dim), np.float32),
              "terminal": np.zeros(n, np.float32), "episode_end": np.zeros(n, bool)}
    step, snapshots, rng = 0, [], np.random.default_rng(seed)
  if step >= n:
    return snapshots
  observation, _ = env.reset(seed=int(rng.integers(2 ** 31)))
  env.action_space.seed(int(rng.integers(2 ** 31)))
  start, start_step = time.perf_counter(), step
  while step < n:
    if step < budget.start_steps:
      action = env.action_space.sample()
    else:
      key = jax.random.key(int(rng.integers(2 ** 31)))
      action = np.asarray(act(state["actor"], observation[None].astype(np.float32), key)[0][0])
    next_observation, reward, terminated, truncated, _ = env.step(action)
    replay["observation"][step], replay["action"][step] = observation, action
    replay["reward"][step], replay["next_observation"][step] = reward, next_observation
    replay["terminal"][step], replay["episode_end"][step] = terminated, terminated or truncated
    observation = next_observation
    if terminated or truncated:
      observation, _ = env.reset(seed=int(rng.integers(2 ** 31)))
    step += 1
    if step >= budget.start_steps and step % budget.chunk == 0:
      index = rng.integers(0, step, size=(budget.chunk, budget.batch_size))
      batches = {k: jnp.asarray(replay[k][index]) for k in
                 ("observation", "action", "reward", "next_observation", "terminal")}
      state, _ = updates(state, batches)
    if step % budget.snapshot_every == 0 or step == n:
      returns = evaluate.rollout(lambda o: greedy(state["actor"], o), env_id,
                                 budget.eval_episodes, seed=10_000 + step)
      path = os.path.join(directory, f"actor_{step}.pkl")
      with open(path, "wb") as f:
        pickle.dump(jax.tree.map(np.asarray, state["actor"]), f)
      snapshots.append({"step": step, "return": float(returns.mean()),
                        "score": float(evaluate.normalized_score(family, returns).mean()),
                        "path": os.path.basename(path)})
      with open(checkpoint_path + ".tmp", "wb") as f:
        pickle.dump({"state": jax.tree.map(np.asarray, state), "replay": replay, "step": step,
                     "snapshots": snapshots, "rng": rng.bit_generator.state}, f)
      os.replace(checkpoint_path + ".tmp", checkpoint_path)
      elapsed = time.perf_counter() - start
      eta = elapsed / (step - start_step) * (n - step)
      _say(f"online SAC on {env_id}: step {step}/{n} ({100 * step / n:.0f}%), return "
           f"{returns.mean():.1f} (score {snapshots[-1]['score']:.1f}), "
           f"{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min")
  env.close()
  return snapshots


def choose(snapshots: list[dict], kind: str) -> dict:
  """The snapshot of a data set kind: 'expert' the best score, 'medium' (and 'medium-replay',
  which ends there) the score nearest a third of the best."""
  best = max(snapshots, key=lambda s: s["score"])
  if kind == "expert":
    return best
  return min(snapshots, key=lambda s: (abs(s["score"] - best["score"] / 3), s["step"]))


def collect(family: str, policy, transitions: int, seed: int) -> list[dict]:
  """RLDS episodes of `policy(observation, rng) -> action` (None: uniform random) until
  `transitions` transitions; the last episode is cut there (is_last, not is_terminal)."""
  env = make_env(ENV_IDS[family])
  rng = np.random.default_rng(seed)
  env.action_space.seed(seed)
  episodes, count = [], 0
  while count < transitions:
    observation, _ = env.reset(seed=int(rng.integers(2 ** 31)))
    steps, done = [], False
    while not done and count < transitions:
      action = env.action_space.sample() if policy is None else policy(observation, rng)
      next_observation, reward, terminated, truncated, _ = env.step(action)
      steps.append(_step(observation, action, reward, first=not steps))
      observation, count = next_observation, count + 1
      done = terminated or truncated
    episodes.append(_finish(steps, observation, terminal=done and terminated))
  env.close()
  return episodes


def replay_episodes(replay: dict, end: int) -> list[dict]:
  """The online run's transitions [0, end) as RLDS episodes (the last may be cut at `end`)."""
  episodes, steps = [], []
  for t in range(end):
    steps.append(_step(replay["observation"][t], replay["action"][t], replay["reward"][t],
                       first=not steps))
    if replay["episode_end"][t] or t == end - 1:
      episodes.append(_finish(steps, replay["next_observation"][t],
                              terminal=bool(replay["terminal"][t])))
      steps = []
  return episodes


def _step(observation, action, reward, first: bool) -> dict:
  return {"observation": np.asarray(observation, np.float32),
          "action": np.asarray(action, np.float32), "reward": np.float32(reward),
          "discount": np.float32(1.0), "is_first": first, "is_last": False,
          "is_terminal": False}


def _finish(steps: list[dict], final_observation, terminal: bool) -> dict:
  """Appends the last step: the final observation, a zero action and reward, discount 0 if
  terminal."""
  zeros = np.zeros_like(steps[0]["action"])
  steps.append({"observation": np.asarray(final_observation, np.float32), "action": zeros,
                "reward": np.float32(0.0), "discount": np.float32(0.0 if terminal else 1.0),
                "is_first": False, "is_last": True, "is_terminal": bool(terminal)})
  return {"steps": steps}


def generate(family: str, kind: str, budget: Budget, seed: int, directory: str):
  """(episodes, metadata) of one data set, training (or resuming) the online run first."""
  if kind not in KINDS:
    raise ValueError(f"kind={kind!r} is not one of {KINDS}")
  if kind == "random":
    episodes = collect(family, None, budget.transitions, seed=seed + 1)
    return episodes, {"policy": "uniform random"}
  snapshots = train_online(family, budget, seed, directory)
  snapshot = choose(snapshots, kind)
  metadata = {"policy": f"online SAC actor at step {snapshot['step']}",
              "policy_return": snapshot["return"], "policy_score": snapshot["score"],
              "best_score": max(s["score"] for s in snapshots)}
  if kind == "medium-replay":
    with open(os.path.join(directory, "online.pkl"), "rb") as f:
      replay = pickle.load(f)["replay"]
    return replay_episodes(replay, snapshot["step"]), metadata
  with open(os.path.join(directory, snapshot["path"]), "rb") as f:
    actor = pickle.load(f)
  agent = online_agent(make_env(ENV_IDS[family]), budget)
  act = jax.jit(agent.act)

  def policy(observation, rng):
    key = jax.random.key(int(rng.integers(2 ** 31)))
    return np.asarray(act(actor, observation[None].astype(np.float32), key)[0][0])

  offset = KINDS.index(kind)
  return collect(family, policy, budget.transitions, seed=seed + 1 + offset), metadata
