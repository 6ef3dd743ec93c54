"""The exploring agent: tabular Q-learning from a replay buffer with an intrinsic bonus on the
next state, in `num_envs` copies of a tabular environment stepped by one `lax.scan`.

Each `update` (pure, jitted, vmappable over seeds):
1. acts `rollout` steps in every environment, epsilon-greedy on Q (random tie-breaking), and
   writes the transitions to a ring buffer; true visit counts n(s') are kept for the metrics
   and the `true_count` bonus;
2. trains the bonus model on a replay mini-batch: the SVD representation
   (svd_representation.spectral_loss, Chandak et al. 2023) of the chain the agent lives in
   (`chain_pairs`: each step s -> s', and s' -> start where s' is terminal) or RND's predictor;
3. `q_updates` Q-learning steps, each on the fresh transitions plus a replay mini-batch,
   Q(s,a) += lr * mean over the batch's copies of (r + r_int(s') + gamma (1 - terminal) max Q(s') - Q(s,a)),
   with r_int(s') = beta / sqrt(n(s') + 1) for counts ('true_count' exact, 'svd' the
   pseudo-count of counts.py), beta * RND error / the mean error at the first update ('rnd':
   about beta on novel states, like a count of 0, and falling as the predictor learns), or 0
   ('none').
Q starts at beta / (1 - gamma) with `optimistic` (the bonus's own optimism: an untried
action is worth never-visited states for ever; without it a state bonus makes the agent
circle its visited states, whose Q the bonus keeps above the untried actions' 0), at 0
otherwise; 'none' with optimistic=False is plain epsilon-greedy.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from big_batch.rl import counts as counts_lib
from big_batch.rl import rnd as rnd_lib
from big_batch.rl import svd_representation as svd
from big_batch.rl import tabular_envs

BONUSES = ("none", "true_count", "svd", "rnd")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
  bonus: str = "svd"
  beta: float = 1.0
  epsilon: float = 0.05
  optimistic: bool = False
  gamma: float = 0.99
  q_learning_rate: float = 0.5
  num_envs: int = 8
  rollout: int = 16
  replay_size: int = 100_000
  q_batch: int = 256
  q_updates: int = 4
  rep_batch: int = 256
  encoder: str = "table"
  observation: str = "one_hot"
  rank: int = 64
  hidden: int = 64
  rep_learning_rate: float = 1e-3
  rep_updates: int = 4
  init_scale: float = 1e-3
  gram_decay: float = 0.9
  rnd_learning_rate: float = 1e-3


class Agent:
  """The agent's pure `init(rng)` and `update(state, negatives)` for one environment."""

  def __init__(self, env: tabular_envs.TabularEnv, config: AgentConfig):
    if config.bonus not in BONUSES:
      raise ValueError(f"bonus {config.bonus!r} is not one of {BONUSES}")
    self.env, self.config = env, config
    self.obs = tabular_envs.observations(env, config.observation)
    self.reachable = tabular_envs.reachable(env)
    self.rep_tx = optax.adam(config.rep_learning_rate)
    self.rnd_tx = optax.adam(config.rnd_learning_rate)

  # --- State -----------------------------------------------------------------------------
  def init(self, rng):
    c, env = self.config, self.env
    k_rep, k_rnd, k_run = jax.random.split(rng, 3)
    rep = svd.init_encoder(k_rep, c.encoder, c.rank, env.num_states, self.obs.shape[1],
                           c.hidden, c.init_scale)
    target, predictor = rnd_lib.init(k_rnd, self.obs.shape[1], c.hidden)
    r = c.replay_size
    return {
        "q": jnp.full((env.num_states, env.num_actions), self.q_init()),
        "counts": jnp.zeros(env.num_states),
        "env_state": jnp.full((c.num_envs,), env.start, jnp.int32),
        "t": jnp.zeros((c.num_envs,), jnp.int32),
        "replay": {"state": jnp.zeros(r, jnp.int32), "action": jnp.zeros(r, jnp.int32),
                   "next_state": jnp.zeros(r, jnp.int32), "reward": jnp.zeros(r),
                   "terminal": jnp.zeros(r, bool)},
        "size": jnp.zeros((), jnp.int32),
        "rep": rep, "rep_opt": self.rep_tx.init(rep), "gram": jnp.zeros((c.rank, c.rank)),
        "rnd_target": target, "rnd": predictor, "rnd_opt": self.rnd_tx.init(predictor),
        "rnd_scale": jnp.ones(()),
        "first_goal": jnp.full((), -1, jnp.int32), "episodes": jnp.zeros((), jnp.int32),
        "goals": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(k_run),  # Raw, so checkpoints can hold it.
    }

  def q_init(self) -> float:
    """beta / (1 - gamma) if optimistic: the value of an untried action if it led to never
    visited states for ever (the bonus at n = 0 is beta), 0 otherwise."""
    return self.config.beta / (1.0 - self.config.gamma) if self.config.optimistic else 0.0

  # --- Acting ----------------------------------------------------------------------------
  def rollout(self, q, env_state, t, rng):
    c, env = self.config, self.env
    tab = tabular_envs.tables(env)

    def one(carry, key):
      s, t = carry
      k_eps, k_rand, k_tie = jax.random.split(key, 3)
      noise = jax.random.uniform(k_tie, (c.num_envs, env.num_actions), maxval=1e-6)
      greedy = jnp.argmax(q[s] + noise, -1)
      explore = jax.random.uniform(k_eps, (c.num_envs,)) < c.epsilon
      action = jnp.where(explore, jax.random.randint(k_rand, (c.num_envs,), 0,
                                                     env.num_actions), greedy)
      nxt, reward, done, s_after, t_after = tabular_envs.step(tab, env.start, env.horizon, s,
                                                              t, action)
      out = {"state": s, "action": action, "next_state": nxt, "reward": reward,
             "terminal": tab["terminal"][nxt], "done": done}
      return (s_after, t_after), out

    (env_state, t), out = jax.lax.scan(one, (env_state, t), jax.random.split(rng, c.rollout))
    return env_state, t, jax.tree.map(lambda x: x.reshape(-1), out)

  # --- Bonuses ---------------------------------------------------------------------------
  def observe(self, indices):
    return jnp.asarray(self.obs)[indices] if self.config.encoder == "mlp" else indices

  def phi(self, rep, indices):
    return svd.encode(rep["phi"], self.observe(indices))

  def bonus(self, state, next_states):
    c = self.config
    if c.bonus == "true_count":
      return counts_lib.count_bonus(state["counts"][next_states], c.beta)
    if c.bonus == "svd":
      n = jnp.minimum(state["size"], c.replay_size)
      pseudo = counts_lib.pseudo_counts(self.phi(state["rep"], next_states), state["gram"], n)
      return counts_lib.count_bonus(pseudo, c.beta)
    if c.bonus == "rnd":
      obs = jnp.asarray(self.obs)[next_states]
      return c.beta * rnd_lib.error(state["rnd_target"], state["rnd"], obs) / state["rnd_scale"]
    return jnp.zeros(next_states.shape)

  def pseudo_counts(self, state):
    """[S] the SVD pseudo-counts of every state under the current representation."""
    n = jnp.minimum(state["size"], self.config.replay_size)
    every = jnp.arange(self.env.num_states)
    return counts_lib.pseudo_counts(self.phi(state["rep"], every), state["gram"], n)

  def fit_representation(self, state, replay, valid, negatives, rng):
    """`rep_updates` Adam steps on the spectral objective, each on `rep_batch` replay rows of
    the chain (s -> s', and s' -> start where s' is terminal, so terminal states have rows
    and counts too), uniform anchors and the stream's negatives."""
    c, env = self.config, self.env
    observe = self.observe if c.encoder == "mlp" else None

    def one(carry, key):
      rep, opt = carry
      k_rows, k_anchor = jax.random.split(key)
      rows = jax.random.randint(k_rows, (c.rep_batch,), 0, valid)
      nxt, ended = replay["next_state"][rows], replay["terminal"][rows]
      batch = {"state": jnp.concatenate([replay["state"][rows], nxt]),
               "next_state": jnp.concatenate([nxt, jnp.full_like(nxt, env.start)]),
               "weight": 2.0 * jnp.concatenate([jnp.ones(rows.shape),
                                                ended.astype(jnp.float32)]),
               "anchor": jax.random.randint(k_anchor, negatives.shape, 0, env.num_states),
               "negative": negatives}
      (loss, parts), grads = jax.value_and_grad(svd.loss_on_batch, has_aux=True)(
          rep, batch, float(env.num_states) ** 2, observe)
      updates, opt = self.rep_tx.update(grads, opt, rep)
      return (optax.apply_updates(rep, updates), opt), (loss, parts)

    (rep, opt), (loss, parts) = jax.lax.scan(one, (state["rep"], state["rep_opt"]),
                                             jax.random.split(rng, c.rep_updates))
    return rep, opt, loss[-1], jax.tree.map(lambda x: x[-1], parts)

  # --- One update ------------------------------------------------------------------------
  def update(self, state, negatives):
    """(state, metrics) after one update (module docstring); `negatives` [B] are states drawn
    uniformly (the trainer's data stream), the u~ of the spectral objective."""
    c, env = self.config, self.env
    rng, k_act, k_replay, k_rep, k_q = jax.random.split(
        jax.random.wrap_key_data(state["rng"]), 5)
    env_state, t, fresh = self.rollout(state["q"], state["env_state"], state["t"], k_act)
    steps = c.num_envs * c.rollout
    pos = (state["size"] + jnp.arange(steps)) % c.replay_size
    replay = {k: v.at[pos].set(fresh[k]) for k, v in state["replay"].items()}
    size = state["size"] + steps
    found = jnp.argmax(fresh["reward"] > 0)
    first_goal = jnp.where((state["first_goal"] < 0) & jnp.any(fresh["reward"] > 0),
                           state["size"] + found + 1, state["first_goal"])
    state = {**state, "rng": jax.random.key_data(rng), "env_state": env_state, "t": t, "replay": replay,
             "size": size, "first_goal": first_goal,
             "counts": state["counts"].at[fresh["next_state"]].add(1.0),
             "episodes": state["episodes"] + jnp.sum(fresh["done"]),
             "goals": state["goals"] + jnp.sum(fresh["reward"] > 0)}
    valid = jnp.minimum(size, c.replay_size)
    metrics = {}
    rows = jax.random.randint(k_replay, (c.rep_batch,), 0, valid)
    if c.bonus == "svd":
      rep, rep_opt, loss, parts = self.fit_representation(state, replay, valid, negatives,
                                                          k_rep)
      psi = svd.encode(rep["psi"], self.observe(negatives))
      gram = counts_lib.psi_gram(psi, float(env.num_states))
      started = state["size"] > steps
      gram = jnp.where(started, c.gram_decay * state["gram"] + (1 - c.gram_decay) * gram, gram)
      state = {**state, "rep": rep, "rep_opt": rep_opt, "gram": gram}
      metrics.update({"svd_loss": loss, **parts})
    if c.bonus == "rnd":
      obs = jnp.asarray(self.obs)[replay["next_state"][rows]]
      rnd_loss, grads = jax.value_and_grad(
          lambda p: jnp.mean(rnd_lib.error(state["rnd_target"], p, obs)))(state["rnd"])
      updates, rnd_opt = self.rnd_tx.update(grads, state["rnd_opt"], state["rnd"])
      scale = jnp.where(state["size"] > steps, state["rnd_scale"], rnd_loss)
      state = {**state, "rnd": optax.apply_updates(state["rnd"], updates), "rnd_opt": rnd_opt,
               "rnd_scale": jnp.maximum(scale, 1e-8)}
      metrics["rnd_loss"] = rnd_loss
    def q_step(q, key):
      q_rows = jax.random.randint(key, (c.q_batch,), 0, valid)
      batch = jax.tree.map(lambda new, old: jnp.concatenate([new, old[q_rows]]),
                           {k: fresh[k] for k in replay}, replay)
      return q_learning_step(q, batch, self.bonus(state, batch["next_state"]), c.gamma,
                             c.q_learning_rate)

    q, td = jax.lax.scan(q_step, state["q"], jax.random.split(k_q, c.q_updates))
    state = {**state, "q": q}
    metrics.update({"loss": jnp.mean(td ** 2), "coverage": self.coverage(state),
                    "first_goal": first_goal.astype(jnp.float32),
                    "episodes": state["episodes"].astype(jnp.float32),
                    "env_steps": size.astype(jnp.float32)})
    return state, metrics

  def coverage(self, state):
    """The fraction of reachable states visited so far."""
    return jnp.sum((state["counts"] > 0) & jnp.asarray(self.reachable)) / self.reachable.sum()


def chain_pairs(state, start: int, replay_size: int):
  """(sources, targets, steps) of the replay as the chain of `update`'s step 2 (NumPy): the
  empirical D P^pi is svd_representation.empirical_dp(sources, targets, S, steps)."""
  size = int(min(int(state["size"]), replay_size))
  replay = {k: np.asarray(v[:size]) for k, v in state["replay"].items()}
  ended = replay["next_state"][replay["terminal"]]
  return (np.concatenate([replay["state"], ended]),
          np.concatenate([replay["next_state"], np.full_like(ended, start)]), size)


def q_learning_step(q, batch, bonus, gamma, learning_rate):
  """(Q, td): Q(s,a) += lr * the mean TD error of the batch's copies of (s, a) (module
  docstring), so repeated rows do not multiply the step."""
  target = (batch["reward"] + bonus
            + gamma * (1.0 - batch["terminal"]) * jnp.max(q[batch["next_state"]], -1))
  td = target - q[batch["state"], batch["action"]]
  total = jnp.zeros_like(q).at[batch["state"], batch["action"]].add(td)
  copies = jnp.zeros_like(q).at[batch["state"], batch["action"]].add(1.0)
  return q + learning_rate * total / jnp.maximum(copies, 1.0), td


def time_to_goal(first_goal) -> np.ndarray:
  """Env steps to the first reward (np.inf where never reached)."""
  first_goal = np.asarray(first_goal, np.float64)
  return np.where(first_goal < 0, np.inf, first_goal)
