"""Count-based exploration with SVD pseudo-counts (Chandak et al., ICML 2023) as a task.

The state is the agent of agent.py (Q table, replay buffer, the SVD representation or RND,
environments); each train step is one `Agent.update`: `exploration.num_envs` x
`exploration.rollout` environment steps, one spectral (or RND) step and `q_updates`
Q-learning steps. The trainer's stream is the environment's state set (`rl_states` data,
states_builder.py): each batch row is a uniform state, the negatives u~ of the spectral
objective, so `config.batch.size` is that mini-batch. The environment is the data variant
(`config.data.variant`: four_rooms, deep_sea_<n>, minigrid_<id>).

Config: `exploration` {bonus 'none' | 'true_count' | 'svd' | 'rnd', beta, epsilon, optimistic, gamma,
q_learning_rate, q_batch, q_updates, num_envs, rollout, replay_size, rnd_learning_rate},
`representation` {encoder 'table' | 'mlp', observation 'one_hot' | 'coordinates' |
'pixels', rank, hidden, learning_rate, updates (Adam steps per update), init_scale,
gram_decay, batch_size (replay transitions)}.
Evaluator kind 'exploration': coverage, goal_found, time to goal (censored at the steps so
far), episodes; for 'svd' the Spearman
correlation of the pseudo-counts with the true counts (of the source states of the replay's
chain, agent.chain_pairs) and
the largest principal angle (degrees) and reconstruction error against the exact top-k SVD
of the replay's empirical D P^pi.
"""
import jax
import numpy as np
from scipy import stats

from big_batch.rl import agent as agent_lib
from big_batch.rl import svd_representation as svd
from big_batch.rl import tabular_envs
from big_batch.tasks.common import Task

SECTIONS = ("exploration", "representation")
KINDS = ("exploration",)
DATA = "rl_states"


def agent_config(config) -> agent_lib.AgentConfig:
  e, r = config.exploration, config.representation
  return agent_lib.AgentConfig(
      bonus=e.bonus, beta=e.beta, epsilon=e.epsilon, gamma=e.gamma, optimistic=e.optimistic,
      q_learning_rate=e.q_learning_rate, num_envs=e.num_envs, rollout=e.rollout,
      replay_size=e.replay_size, q_batch=e.q_batch, q_updates=e.q_updates,
      rnd_learning_rate=e.rnd_learning_rate, rep_batch=r.batch_size, encoder=r.encoder,
      observation=r.observation, rank=r.rank, hidden=r.hidden,
      rep_learning_rate=r.learning_rate, gram_decay=r.gram_decay, rep_updates=r.updates,
      init_scale=r.init_scale)


def build(config, data, mesh, total_steps: int):
  """The exploring agent of `config` in the environment `config.data.variant`."""
  del mesh, total_steps
  env = tabular_envs.make(config.data.variant)
  if data.train.num_examples != env.num_states:
    raise ValueError(f"the data has {data.train.num_examples} states, the environment "
                     f"{config.data.variant!r} {env.num_states}")
  agent = agent_lib.Agent(env, agent_config(config))

  def train_step(state, batch):
    return agent.update(state, batch["state"])

  evaluators = {name: (lambda state: evaluate(agent, state))
                for name in config.get("evals", {}).keys()}
  return Task(init=agent.init, train_step=train_step, evaluators=evaluators)


TOP = 4


def representation_quality(agent, state) -> dict:
  """Spearman(pseudo-counts, source counts); the largest principal angle (degrees) between
  the exact top-4 left singular vectors of the replay's D P^pi and the learned span of phi
  (the tail of a rank-64 SVD is near-degenerate, so its own angles say little); the fraction
  of the exact top-k energy ||Q_phi^T U_k Sigma_k||^2 / ||Sigma_k||^2 inside that span; and
  the reconstruction errors ||M - Phi Psi^T|| / ||M|| of the learned and the exact rank k."""
  s, t, steps = agent_lib.chain_pairs(state, agent.env.start, agent.config.replay_size)
  m = svd.empirical_dp(s, t, agent.env.num_states, steps)
  every = np.arange(agent.env.num_states)
  phi = np.asarray(agent.phi(state["rep"], every))
  psi = np.asarray(svd.encode(state["rep"]["psi"], agent.observe(every)))
  u, sv, v = svd.top_k_svd(m, agent.config.rank)
  visited = np.bincount(s, minlength=agent.env.num_states)
  seen = visited > 0
  pseudo = np.asarray(agent.pseudo_counts(state))
  return {"count_spearman": float(stats.spearmanr(pseudo[seen], visited[seen]).correlation),
          "top4_max_angle": float(np.degrees(svd.principal_angles(phi, u[:, :TOP])[-1])),
          "energy_captured": svd.energy_captured(phi, u * sv),
          "reconstruction_error": svd.reconstruction_error(phi, psi, m),
          "exact_reconstruction_error": svd.reconstruction_error(u * sv, v, m)}


def evaluate(agent, state) -> dict:
  found = int(state["first_goal"]) >= 0
  # Not found: the steps so far, a lower bound (goal_found says which).
  out = {"coverage": float(agent.coverage(state)), "goal_found": float(found),
         "time_to_goal": float(state["first_goal"] if found else state["size"]),
         "episodes": float(state["episodes"]), "goals": float(state["goals"])}
  if agent.config.bonus == "svd":
    out.update(representation_quality(agent, state))
  return out


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates `exploration`, `representation`, the data and the evaluators."""
  del mesh_sizes, batch_sizes
  data = checker.section("data")
  if data.read("name") != DATA:
    data.fail("name", f"must be {DATA!r}: the exploring task streams the environment's states")
  data.read("variant", default="four_rooms")  # datasets.check knows the builder's variants.
  e = checker.section("exploration")
  e.one_of("bonus", agent_lib.BONUSES)
  for key in ("beta", "epsilon"):
    e.non_negative(key)
  e.boolean("optimistic")
  if e.read("epsilon") > 1:
    e.fail("epsilon", "must be in [0, 1]")
  gamma = e.non_negative("gamma")
  if gamma >= 1:
    e.fail("gamma", "must be in [0, 1)")
  for key in ("q_learning_rate", "rnd_learning_rate"):
    e.positive(key)
  for key in ("num_envs", "rollout", "replay_size", "q_batch", "q_updates"):
    e.positive(key, integer=True)
  e.reject_unread("config.exploration takes bonus, beta, epsilon, optimistic, gamma, "
                  "q_learning_rate, "
                  "rnd_learning_rate, num_envs, rollout, replay_size, q_batch, q_updates")
  r = checker.section("representation")
  r.one_of("encoder", svd.ENCODERS)
  r.one_of("observation", tabular_envs.OBSERVATIONS)
  for key in ("rank", "hidden", "batch_size"):
    r.positive(key, integer=True)
  r.positive("learning_rate")
  r.positive("init_scale")
  r.positive("updates", integer=True)
  decay = r.non_negative("gram_decay")
  if decay >= 1:
    r.fail("gram_decay", "must be in [0, 1)")
  r.reject_unread("config.representation takes encoder, observation, rank, hidden, "
                  "learning_rate, updates, init_scale, gram_decay, batch_size")
  top = checker.section()
  if top.has("evals"):
    for name in top.section("evals").keys():
      section = checker.section(f"evals.{name}")
      section.one_of("kind", KINDS, default="exploration")
      section.reject_unread("an exploration evaluator takes every and kind")
