"""One SAC-N / EDAC update as a pure function of a state pytree (An et al. 2021; Nikulin et
al. 2022: LB-SAC is this update with a large batch and a sqrt-scaled learning rate).

The order is the reference code's (CORL `sac_n.py` / `edac.py` `update`): (1) the temperature,
from log π of fresh policy actions; (2) the actor, with the new α, against min_j Q_j; (3) the
critics, against targets from the target critics at a' ~ π(·|s') with the new actor and α,
plus η · L_ES for EDAC (η = 0: SAC-N); (4) the Polyak update of the target critics with τ.
N = 2 with η = 0 is SAC with clipped double Q (the online generator uses it).

The state is {'actor', 'critic', 'target_critic', 'log_alpha', 'actor_opt', 'critic_opt',
'alpha_opt', 'key', 'updates'}: pure dicts of arrays, the key (raw key data, so checkpoints
hold plain integers) the only randomness, so a run is
a function of its initial key and its batches. `updates` runs K updates in one `lax.scan`
over batches with a leading K axis.
"""
import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from big_batch.rl import losses
from big_batch.rl.q_ensemble import Actor, EnsembleCritic

TRANSITION_KEYS = ("observation", "action", "reward", "next_observation", "terminal")
DEGENERATE_DIVERSITY = (
    "EDAC's diversity term (eta > 0) needs actions of 2 or more dimensions: with one, the "
    "normalized action gradients are +-1 and the term's gradient, eps / (|g| + eps)^2, "
    "explodes where a critic's action gradient crosses 0 (eps = 1e-10)")


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
  """SAC-N / EDAC settings; defaults are the reference code's (CORL, LB-SAC)."""
  num_critics: int = 10
  hidden: int = 256
  num_layers: int = 3
  layer_norm: bool = False
  edac_init: bool = False
  gamma: float = 0.99
  tau: float = 5e-3
  eta: float = 0.0  # EDAC's diversity weight; 0 is SAC-N.
  target_entropy: float | None = None  # None: −action_dim.
  initial_alpha: float = 1.0


class Agent:
  """SAC-N / EDAC for observations of `observation_dim` and actions in ±`max_action`."""

  def __init__(self, observation_dim: int, action_dim: int, max_action: float,
               hp: Hyperparameters, actor_tx: optax.GradientTransformation,
               critic_tx: optax.GradientTransformation,
               alpha_tx: optax.GradientTransformation):
    if hp.eta and hp.num_critics < 2:
      raise ValueError(f"EDAC's diversity term needs num_critics >= 2, not {hp.num_critics}")
    if hp.eta and action_dim < 2:
      raise ValueError(DEGENERATE_DIVERSITY)
    self.observation_dim, self.action_dim = observation_dim, action_dim
    self.max_action, self.hp = float(max_action), hp
    self.target_entropy = (-float(action_dim) if hp.target_entropy is None
                           else float(hp.target_entropy))
    self.actor_tx, self.critic_tx, self.alpha_tx = actor_tx, critic_tx, alpha_tx
    self.actor_graph = nnx.split(nnx.eval_shape(lambda: self._new_actor(jax.random.key(0))))[0]
    self.critic_graph = nnx.split(nnx.eval_shape(
        lambda: self._new_critic(jax.random.key(0))))[0]

  def _new_actor(self, key):
    hp = self.hp
    return Actor(self.observation_dim, self.action_dim, max_action=self.max_action,
                 hidden=hp.hidden, num_layers=hp.num_layers, edac_init=hp.edac_init,
                 rngs=nnx.Rngs(key))

  def _new_critic(self, key):
    hp = self.hp
    return EnsembleCritic(self.observation_dim, self.action_dim, num_critics=hp.num_critics,
                          hidden=hp.hidden, num_layers=hp.num_layers, layer_norm=hp.layer_norm,
                          edac_init=hp.edac_init, rngs=nnx.Rngs(key))

  def init(self, key) -> dict:
    actor_key, critic_key, key = jax.random.split(key, 3)
    actor = nnx.state(self._new_actor(actor_key)).to_pure_dict()
    critic = nnx.state(self._new_critic(critic_key)).to_pure_dict()
    log_alpha = jnp.asarray(jnp.log(self.hp.initial_alpha), jnp.float32)
    return {"actor": actor, "critic": critic, "target_critic": jax.tree.map(jnp.copy, critic),
            "log_alpha": log_alpha, "actor_opt": self.actor_tx.init(actor),
            "critic_opt": self.critic_tx.init(critic),
            "alpha_opt": self.alpha_tx.init(log_alpha), "key": jax.random.key_data(key),
            "updates": jnp.zeros((), jnp.int32)}

  # --- the networks as functions of their parameters ------------------------------------
  def act(self, actor_params, observation, key):
    """(a, log π(a|s)) with a ~ π(·|s), reparameterized."""
    return nnx.merge(self.actor_graph, actor_params)(observation, key)

  def greedy(self, actor_params, observation):
    """The deterministic policy max_action · tanh(mean(s)) (evaluation)."""
    return nnx.merge(self.actor_graph, actor_params).deterministic(observation)

  def q(self, critic_params, observation, action):
    """Q_j(s, a) of every critic: (N, B)."""
    return nnx.merge(self.critic_graph, critic_params)(observation, action)

  def action_gradients(self, critic_params, observation, action):
    """∂Q_j/∂a at (s_b, a_b) for every critic j: (N, B, action_dim), one backward pass."""
    n = self.hp.num_critics
    tiled = lambda x: jnp.broadcast_to(x[None], (n, *x.shape))  # noqa: E731
    def total(a):  # The module is merged inside the traced function (NNX trace levels).
      return nnx.merge(self.critic_graph, critic_params).members(tiled(observation), a).sum()

    return jax.grad(total)(tiled(action))

  # --- one update ---------------------------------------------------------------------------
  def update(self, state: dict, batch: dict) -> tuple[dict, dict]:
    """One SAC-N / EDAC update (module docstring) on a batch of transitions
    {observation, action, reward, next_observation, terminal}."""
    hp = self.hp
    key, alpha_key, actor_key, next_key, random_key = jax.random.split(
        jax.random.wrap_key_data(state["key"]), 5)
    obs, action = batch["observation"], batch["action"]
    reward = batch["reward"].astype(jnp.float32)
    done = batch["terminal"].astype(jnp.float32)

    # (1) Temperature.
    _, log_prob = self.act(state["actor"], obs, alpha_key)
    alpha_loss, alpha_grad = jax.value_and_grad(losses.temperature_loss)(
        state["log_alpha"], log_prob, self.target_entropy)
    alpha_updates, alpha_opt = self.alpha_tx.update(alpha_grad, state["alpha_opt"],
                                                    state["log_alpha"])
    log_alpha = optax.apply_updates(state["log_alpha"], alpha_updates)
    alpha = jnp.exp(log_alpha)

    # (2) Actor.
    def actor_objective(actor_params):
      new_action, log_prob = self.act(actor_params, obs, actor_key)
      q = self.q(state["critic"], obs, new_action)
      return losses.actor_loss(q, log_prob, alpha), (log_prob, q)

    (actor_loss, (log_prob, policy_q)), actor_grads = jax.value_and_grad(
        actor_objective, has_aux=True)(state["actor"])
    actor_updates, actor_opt = self.actor_tx.update(actor_grads, state["actor_opt"],
                                                    state["actor"])
    actor = optax.apply_updates(state["actor"], actor_updates)

    # (3) Critics.
    next_action, next_log_prob = self.act(actor, batch["next_observation"], next_key)
    next_q = self.q(state["target_critic"], batch["next_observation"], next_action)
    target = losses.critic_target(reward, done, next_q, next_log_prob, alpha, hp.gamma)

    def critic_objective(critic_params):
      q = self.q(critic_params, obs, action)
      loss = losses.critic_loss(q, target)
      diversity = jnp.zeros(())
      if hp.eta:
        diversity = losses.edac_diversity(self.action_gradients(critic_params, obs, action))
        loss = loss + hp.eta * diversity
      return loss, (q, diversity)

    (critic_loss, (q, diversity)), critic_grads = jax.value_and_grad(
        critic_objective, has_aux=True)(state["critic"])
    critic_updates, critic_opt = self.critic_tx.update(critic_grads, state["critic_opt"],
                                                       state["critic"])
    critic = optax.apply_updates(state["critic"], critic_updates)

    # (4) Target critics.
    target_critic = losses.polyak(state["target_critic"], critic, hp.tau)

    random_action = jax.random.uniform(random_key, action.shape, jnp.float32,
                                       -self.max_action, self.max_action)
    metrics = {
        "loss": critic_loss, "critic_loss": critic_loss, "actor_loss": actor_loss,
        "alpha_loss": alpha_loss, "alpha": alpha, "entropy": -log_prob.mean(),
        "q_mean": q.mean(), "q_policy_std": losses.q_std_over_ensemble(policy_q),
        "q_random_std": losses.q_std_over_ensemble(self.q(critic, obs, random_action)),
        "target_mean": target.mean(),
        "critic_grad_norm": optax.global_norm(critic_grads).astype(jnp.float32),
        "actor_grad_norm": optax.global_norm(actor_grads).astype(jnp.float32),
    }
    if hp.eta:
      metrics["diversity"] = diversity
    new_state = {"actor": actor, "critic": critic, "target_critic": target_critic,
                 "log_alpha": log_alpha, "actor_opt": actor_opt, "critic_opt": critic_opt,
                 "alpha_opt": alpha_opt, "key": jax.random.key_data(key),
                 "updates": state["updates"] + 1}
    return new_state, metrics

  def updates(self, state: dict, batches: dict) -> tuple[dict, dict]:
    """K updates in one `lax.scan` over batches with a leading axis of K; metrics averaged."""
    state, metrics = jax.lax.scan(self.update, state, batches)
    return state, jax.tree.map(lambda m: m.mean(0), metrics)
