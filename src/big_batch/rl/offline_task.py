"""Offline RL with Q-ensembles as a task: SAC-N, EDAC and LB-SAC (An et al. 2021; Nikulin et
al. 2022, "Q-Ensemble for Offline RL: Don't Scale the Ensemble, Scale the Batch Size").

One algorithm, three settings (configs/offline_rl/):

  SAC-N   N critics, min over the ensemble in the targets and the actor loss, batch 256,
          learning rates 3e-4 (`config.rl.eta = 0`);
  EDAC    SAC-N plus η · L_ES, the ensemble gradient-diversity term (`config.rl.eta > 0`);
  LB-SAC  SAC-N with a large batch B and every learning rate lr0 · sqrt(B / 256)
          (`config.batch.lr_scaling = 'sqrt'`, `base_size = 256`), fewer critics and epochs.

The update is `sac_n.Agent.update`. Data: an RLDS data set read as transitions
(`config.data.transitions = True`: `offline_rl` generated here, or a prepared tfds
`d4rl_mujoco_*`). One trainer step runs `config.rl.updates_per_step` = K updates in one
`lax.scan` (K jitted updates per dispatch): the task asks the trainer for K·B rows a step
(`Task.batch_size`), the trainer's seeded stream draws them (epochs without replacement, so a
resumed run sees the same batches; each process reads its own rows), and update j trains on
the j-th B-row block of every device's rows (tasks/accumulation.py's split, no resharding);
K·B may not exceed the transitions of the data.
`config.batch.size` is B, the paper's batch. This is a deviation from sampling with
replacement inside the step from a replay buffer held on device: the trainer's stream gives
exact resume and multi-host reading already, and a replay in the state would be written into
every checkpoint. `num_steps` counts trainer steps, K updates each; learning-rate schedules
run over the K · num_steps updates.

The ensemble axis of the critics (and of their Adam moments and targets) may be sharded over
a mesh axis (`config.rl.ensemble_axis`); everything else is replicated.

Evaluators (`config.evals.<name>`, kind 'rollout'): the deterministic policy
max_action · tanh(mean) in `config.rl.env` for `episodes` seeded episodes (gymnasium vector
environments): mean return, D4RL normalized score (`evaluate.normalized_score`), and
`q_random_std`, the std over the ensemble of Q at uniformly random actions, averaged over
`ood_states` states of the training data (LB-SAC's OOD-penalty measure).
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from big_batch import optim
from big_batch.checks import ConfigError
from big_batch.data import rlds
from big_batch.parallel import mesh as mesh_lib
from big_batch.rl import evaluate, losses, sac_n
from big_batch.rl.sac_n import Agent, Hyperparameters
from big_batch.tasks.accumulation import batch_shards
from big_batch.tasks.common import Task

# The config section this task owns (validate names it when another task is chosen).
SECTIONS = ("rl",)

KINDS = ("rollout",)
OPTIMIZERS = ("actor", "critic", "alpha")
CRITIC_LEAVES = ("critic", "target_critic", "critic_opt")


def hyperparameters(rl) -> Hyperparameters:
  return Hyperparameters(
      num_critics=rl.num_critics, hidden=rl.hidden, num_layers=rl.num_layers,
      layer_norm=rl.get("layer_norm", False), edac_init=rl.get("edac_init", False),
      gamma=rl.get("gamma", 0.99), tau=rl.get("tau", 5e-3), eta=rl.get("eta", 0.0),
      target_entropy=rl.get("target_entropy"), initial_alpha=rl.get("initial_alpha", 1.0))


def _read_transitions(split) -> dict:
  arrays = split.read(np.arange(split.num_examples))
  missing = [k for k in rlds.KEYS if k not in arrays]
  if missing:
    raise ConfigError(f"offline RL needs transitions {rlds.KEYS}; the data gives "
                      f"{sorted(arrays)} (set config.data.transitions=True for RLDS episodes)")
  return arrays


def max_action_of(env_id: str) -> float:
  env = evaluate.make_vector_env(env_id, 1)
  try:
    return float(env.single_action_space.high[0])
  finally:
    env.close()


def build(config, data, mesh, total_steps: int) -> Task:
  """The offline Q-ensemble task (module docstring)."""
  rl = config.rl
  train = _read_transitions(data.train)
  k, size = rl.get("updates_per_step", 1), config.batch.size
  if k * size > len(train["reward"]):
    raise ConfigError(
        f"config.rl.updates_per_step={k} x config.batch.size={size} = {k * size} rows a step "
        f"exceed the {len(train['reward'])} transitions of the data: a step's K batches are "
        "drawn without replacement; lower updates_per_step")
  if rl.get("eta", 0.0) and train["action"].shape[1] < 2:
    raise ConfigError(f"config.rl.eta={rl.eta}: {sac_n.DEGENERATE_DIVERSITY}")
  total_updates = total_steps * k
  tx = {name: optim.build(config.optimizers[name], total_updates, batch=config.batch,
                          name=f"optimizers.{name}") for name in OPTIMIZERS}
  agent = Agent(train["observation"].shape[1], train["action"].shape[1],
                max_action_of(rl.env), hyperparameters(rl), tx["actor"].tx, tx["critic"].tx,
                tx["alpha"].tx)

  def init(rng):
    return agent.init(rng)

  def train_step(state, batch):
    shards = batch_shards()
    batch = {key: batch[key] for key in rlds.KEYS}
    if k == 1:
      state, metrics = agent.update(state, batch)
    else:
      state, metrics = agent.updates(state, jax.tree.map(lambda x: update_blocks(x, k, shards),
                                                         batch))
    updates = state["updates"]
    metrics.update({f"learning_rate/{name}": jnp.asarray(o.learning_rate(updates), jnp.float32)
                    for name, o in tx.items()})
    metrics["updates"] = updates.astype(jnp.float32)
    return state, metrics

  greedy = jax.jit(agent.greedy)
  q_values = jax.jit(agent.q)

  def rollout(name, section):
    episodes, seed = section.get("episodes", 10), section.get("seed", 0)
    ood = np.random.default_rng(seed).choice(len(train["reward"]),
                                             min(section.get("ood_states", 1000),
                                                 len(train["reward"])), replace=False)
    states = train["observation"][ood]
    random_actions = np.random.default_rng(seed + 1).uniform(
        -agent.max_action, agent.max_action, (len(ood), agent.action_dim)).astype(np.float32)

    def evaluator(state):
      actor = jax.device_get(state["actor"])
      returns = evaluate.rollout(lambda o: greedy(actor, o), rl.env, episodes, seed)
      q = q_values(jax.device_get(state["critic"]), states, random_actions)
      return {"return": float(returns.mean()), "return_std": float(returns.std()),
              "normalized_score": float(evaluate.normalized_score(rl.env, returns).mean()),
              "q_random_std": float(losses.q_std_over_ensemble(q))}

    return evaluator

  evaluators = {name: rollout(name, section) for name, section in config.get("evals", {}).items()}
  return Task(init=init, train_step=train_step, evaluators=evaluators,
              shardings=lambda abstract, mesh: shardings(abstract, mesh, rl),
              batch_size=lambda state: k * size)


def update_blocks(x, k: int, shards: int):
  """(K·B, ...) rows, split in `shards` contiguous device blocks, as (K, B, ...): update j
  takes the j-th sub-block of every device's block (tasks/accumulation.py's `micro_batch`
  order), so no row leaves its device."""
  rest = x.shape[1:]
  return x.reshape(shards, k, -1, *rest).swapaxes(0, 1).reshape(k, -1, *rest)


def shardings(abstract_state, mesh, rl):
  """Replicated, except the critics' ensemble axis over `rl.ensemble_axis` (if set)."""
  axis = rl.get("ensemble_axis")

  def spec(path, leaf):
    top = path[0].key if hasattr(path[0], "key") else None
    if (axis and top in CRITIC_LEAVES and leaf.ndim >= 1
        and leaf.shape[0] == rl.num_critics):
      return NamedSharding(mesh, PartitionSpec(axis))
    return NamedSharding(mesh, PartitionSpec())

  return jax.tree_util.tree_map_with_path(spec, abstract_state)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates `config.rl`, the three optimizers, the batch and the rollout evaluators."""
  rl = checker.section("rl")
  env = rl.read("env")
  try:
    evaluate.env_family(env)
  except ValueError as e:
    rl.fail("env", str(e).split("=", 1)[-1])
  critics = rl.positive("num_critics", integer=True)
  rl.positive("hidden", integer=True)
  rl.positive("num_layers", integer=True)
  rl.boolean("layer_norm", default=False)
  rl.boolean("edac_init", default=False)
  gamma = rl.read("gamma", default=0.99)
  if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 <= gamma < 1:
    rl.fail("gamma", "must be a number in [0, 1)")
  tau = rl.read("tau", default=5e-3)
  if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau <= 1:
    rl.fail("tau", "must be a number in (0, 1]")
  eta = rl.non_negative("eta", default=0.0)
  if eta and critics < 2:
    rl.fail("eta", f"needs num_critics >= 2 (EDAC's diversity is over pairs of critics), "
                   f"not {critics}")
  entropy = rl.read("target_entropy", default=None)
  if entropy is not None and (isinstance(entropy, bool) or not isinstance(entropy, (int, float))):
    rl.fail("target_entropy", "must be a number or None (None: -action_dim)")
  rl.positive("initial_alpha", default=1.0)
  k = rl.positive("updates_per_step", default=1, integer=True)
  axis = rl.read("ensemble_axis", default=None)
  if axis is not None:
    if axis not in mesh_sizes:
      rl.fail("ensemble_axis", f"is not a mesh axis {sorted(mesh_sizes)}")
    if critics % mesh_sizes[axis]:
      rl.fail("ensemble_axis", f"has {mesh_sizes[axis]} devices, which do not divide "
                               f"num_critics={critics}")
  rl.reject_unread("config.rl takes env, num_critics, hidden, num_layers, layer_norm, "
                   "edac_init, gamma, tau, eta, target_entropy, initial_alpha, "
                   "updates_per_step, ensemble_axis")
  for name in OPTIMIZERS:
    optim.check(checker.section(f"optimizers.{name}"))
  checker.section("optimizers").reject_unread("config.optimizers takes actor, critic, alpha")
  batch = checker.section("batch")
  optim.check_batch_scaling(batch)
  size = batch.read("size")
  shards = mesh_lib.shards(mesh_sizes)
  if size % shards:
    batch.fail("size", f"must be divisible by the {shards} devices the batch is split over "
                       f"(each of the {k} updates of a step takes B rows split over them)")
  if batch.node.get("schedule"):
    batch.fail("schedule", "must be empty: offline RL trains on a fixed batch size")
  data = checker.section("data")
  if not data.node.get("transitions", False):
    data.fail("transitions", "must be True: offline RL trains on transitions of RLDS episodes")
  top = checker.section()
  if top.has("evals"):
    for name in top.section("evals").keys():
      section = checker.section(f"evals.{name}")
      section.one_of("kind", KINDS, default="rollout")
      section.positive("episodes", default=10, integer=True)
      section.non_negative("seed", default=0, integer=True)
      section.positive("ood_states", default=1000, integer=True)
      section.reject_unread("a rollout evaluator takes every, kind, episodes, seed, ood_states")
