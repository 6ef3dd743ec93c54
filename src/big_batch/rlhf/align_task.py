"""Alignment (RLHF stage 3) as a task: ReMax, REINFORCE and its baselines, or PPO, each with
the per-token KL penalty to a frozen reference policy, generation inside the step.

One step, for a batch of B prompts (`pydoc_text` windows of `data.seq_len` bytes):

1. sample a response of `alignment.response_len` bytes per prompt (K per prompt for
   'rloo' / 'group_mean', K = `group_size`) with temperature and top-p, by the recurrent
   state (generation.py); ReMax also decodes greedily;
2. log π and log π_ref of the response tokens by one parallel forward each; the reward r
   (the frozen reward model, or with `reward='ground_truth'` the prose score itself);
3. REINFORCE family: G = KL-shaped returns of clip(r − b) (returns.py), the loss
   −Σ G log π m / Σ m (estimators.py). PPO: per-token rewards, a value head (the reward
   model's architecture, initialised from it as DeepSpeed-Chat does), GAE, `ppo.epochs`
   passes of the clipped surrogate and the clipped value loss, each with its own optimizer.

Config: `model` (the policy's LinearAttentionLM; the reward model and the critic have its
body), `alignment` {estimator, kl_coef, gamma, reward_clip, response_len, temperature,
top_p, group_size, group_normalize, moving_mean_decay, reward ('model' | 'ground_truth'),
reward_workdir, reward_step, ppo {clip, value_clip, gamma, lam, epochs}}, `optimizers.policy`,
`optimizers.critic` (PPO). The policy and the reference come from the pretrained LM with
`init_from.paths = {'policy': 'params', 'reference': 'params'}`; the reward model from the
checkpoint of a reward-model run in `alignment.reward_workdir`, read when the task is built.

Metrics: `reward` and `ground_truth` (prose score) of the samples, `reward_greedy` and
`ground_truth_greedy` (ReMax, which decodes greedily anyway), `kl` (Σ_t log π − log π_ref of
a sample, the estimate of KL(π‖π_ref) per response), `response_length`, `grad_norm`,
`baseline`; PPO adds `value_loss`, `clip_fraction`. The `alignment` evaluator kind scores
sampled and greedy responses to held-out prompts with a fixed key. Randomness is a function
of (seed, step), so a resumed run continues exactly.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from big_batch import models, optim
from big_batch.checks import ConfigError
from big_batch.evals import check_over_split, over_split
from big_batch.parallel import mesh as mesh_lib
from big_batch.rlhf import estimators, generation, returns
from big_batch.rlhf.reward import end_values, sequence_reward
from big_batch.rlhf.reward_task import check_single_device_attention, new_reward_model
from big_batch.rlhf.score import prose_score
from big_batch.tasks.common import Task, apply_gradients

SECTIONS = ("alignment",)
REWARDS = ("model", "ground_truth")
KINDS = ("alignment",)
EVAL_KEY = 1_000_003


def load_reward_params(alignment, abstract_params):
  """The `params` of the reward-model run in `alignment.reward_workdir` (its latest
  checkpoint, or `reward_step`), checked against this run's reward-model shapes."""
  from big_batch.train import init_from
  section = ml_collections.ConfigDict({"workdir": alignment.reward_workdir,
                                       "paths": {"reward": "params"},
                                       "step": alignment.get("reward_step")})
  abstract = {"reward": abstract_params}
  restored, _ = init_from.warm_start(abstract, abstract, section)
  return jax.tree.map(np.asarray, restored["reward"])


class Models:
  """Graph definitions of the policy (LinearAttentionLM) and of the reward / value model."""

  def __init__(self, config):
    self.config = config
    self.policy_graph = nnx.split(nnx.eval_shape(
        lambda: models.build_language_model(config.model, nnx.Rngs(0))))[0]
    self.reward_graph, self.reward_abstract = nnx.split(nnx.eval_shape(
        lambda: new_reward_model(config.model, 0)))

  def new_policy(self, rng):
    return nnx.state(models.build_language_model(self.config.model, nnx.Rngs(rng)))

  def new_value_model(self, rng):
    return nnx.state(new_reward_model(self.config.model, rng))

  def policy(self, params):
    return nnx.merge(self.policy_graph, params)

  def reward_model(self, params):
    return nnx.merge(self.reward_graph, params)


def build(config, data, mesh, total_steps: int) -> Task:
  """The alignment task of the module docstring."""
  al = config.alignment
  estimator = al.estimator
  group = al.group_size if estimator in estimators.GROUP_ESTIMATORS else 1
  nets = Models(config)
  policy_opt = optim.build(config.optimizers.policy, total_steps, batch=config.batch,
                           name="optimizers.policy")
  critic_opt = (optim.build(config.optimizers.critic, total_steps, batch=config.batch,
                            name="optimizers.critic") if estimator == "ppo" else None)
  if al.reward == "model" and al.get("reward_workdir") is None:
    raise ConfigError("config.alignment.reward_workdir=None must name a reward-model run "
                      "(configs/rlhf_reward_model.py) when config.alignment.reward='model'")
  reward_params = (load_reward_params(al, nnx.to_pure_dict(nets.reward_abstract))
                   if al.reward == "model" else None)

  def init(rng):
    policy = nnx.to_pure_dict(nets.new_policy(rng))
    state = {"step": jnp.zeros((), jnp.int32), "policy": policy,
             "reference": jax.tree.map(jnp.copy, policy),
             "opt_state": policy_opt.tx.init(policy), "moving_mean": jnp.zeros((), jnp.float32)}
    if reward_params is not None:
      state["reward"] = jax.tree.map(jnp.asarray, reward_params)
    if estimator == "ppo":
      critic = (jax.tree.map(jnp.copy, state["reward"]) if reward_params is not None else
                nnx.to_pure_dict(nets.new_value_model(jax.random.fold_in(rng, 1))))
      state.update(critic=critic, critic_opt_state=critic_opt.tx.init(critic))
    return state

  def reward_of(state, prompts, tokens, mask):
    if al.reward == "ground_truth":
      return prose_score(tokens, mask)
    return sequence_reward(nets.reward_model(state["reward"]), prompts, tokens, mask)

  def rollout(state, prompts, key, greedy):
    policy = nets.policy(jax.lax.stop_gradient(state["policy"]))
    tokens, mask = generation.generate(policy, prompts, key, al.response_len, greedy=greedy,
                                       temperature=al.temperature, top_p=al.top_p)
    return tokens, mask, reward_of(state, prompts, tokens, mask)

  def log_probs(params, prompts, tokens):
    return generation.response_log_probs(nets.policy(params), prompts, tokens)

  def train_step(state, batch):
    step = state["step"]
    sample_key, greedy_key = jax.random.split(jax.random.fold_in(jax.random.key(config.seed),
                                                                 step))
    prompts = jnp.repeat(batch["inputs"], group, axis=0)
    tokens, mask, rewards = rollout(state, prompts, sample_key, greedy=False)
    old_lp = log_probs(jax.lax.stop_gradient(state["policy"]), prompts, tokens)
    ref_lp = log_probs(state["reference"], prompts, tokens)
    metrics = {"reward": rewards.mean(), "ground_truth": prose_score(tokens, mask).mean(),
               "kl": ((old_lp - ref_lp) * mask).sum(-1).mean(),
               "response_length": mask.sum(-1).mean()}
    new_state = {**state, "step": step + 1}
    if estimator == "ppo":
      return ppo_update(state, new_state, metrics, prompts, tokens, mask, rewards, old_lp,
                        ref_lp)
    greedy_rewards = None
    if estimator == "remax":
      g_tokens, g_mask, greedy_rewards = rollout(state, batch["inputs"], greedy_key, greedy=True)
      metrics.update(reward_greedy=greedy_rewards.mean(),
                     ground_truth_greedy=prose_score(g_tokens, g_mask).mean())
    advantages, baseline = estimators.baselines(
        estimator, rewards, greedy_rewards=greedy_rewards, moving_mean=state["moving_mean"],
        group_size=group, normalize=al.group_normalize)
    g = returns.kl_shaped_returns(old_lp, ref_lp, mask, advantages, kl_coef=al.kl_coef,
                                  gamma=al.gamma, reward_clip=al.reward_clip)
    loss, grads = jax.value_and_grad(lambda p: estimators.policy_gradient_loss(
        log_probs(p, prompts, tokens), g, mask))(state["policy"])
    params, opt_state, norms = apply_gradients(policy_opt, state["policy"], state["opt_state"],
                                               grads, step)
    new_state.update(policy=params, opt_state=opt_state, moving_mean=estimators.update_moving_mean(
        state["moving_mean"], rewards, al.moving_mean_decay))
    return new_state, {**metrics, **norms, "loss": loss, "baseline": baseline.mean()}

  def values_of(critic, prompts, tokens):
    sequence = jnp.concatenate([prompts, tokens], axis=1)
    return nets.reward_model(critic)(sequence[:, :-1])[:, prompts.shape[1] - 1:]

  def ppo_update(state, new_state, metrics, prompts, tokens, mask, rewards, old_lp, ref_lp):
    ppo, step = al.ppo, state["step"]
    old_values = values_of(state["critic"], prompts, tokens)
    rho = returns.ppo_rewards(old_lp, ref_lp, mask, rewards, kl_coef=al.kl_coef,
                              reward_clip=al.reward_clip)
    advantages, targets = returns.gae(rho, old_values, mask, gamma=ppo.gamma, lam=ppo.lam)
    params, opt_state = state["policy"], state["opt_state"]
    critic, critic_opt_state = state["critic"], state["critic_opt_state"]
    for _ in range(ppo.epochs):
      loss, grads = jax.value_and_grad(lambda p: estimators.ppo_clipped_loss(
          log_probs(p, prompts, tokens), old_lp, advantages, mask, ppo.clip))(params)
      params, opt_state, norms = apply_gradients(policy_opt, params, opt_state, grads, step)
      v_loss, v_grads = jax.value_and_grad(lambda c: estimators.value_loss(
          values_of(c, prompts, tokens), old_values, targets, mask, ppo.value_clip))(critic)
      critic, critic_opt_state, _ = apply_gradients(critic_opt, critic, critic_opt_state,
                                                    v_grads, step)
    ratio = jnp.exp(log_probs(params, prompts, tokens) - old_lp)
    clipped = (jnp.abs(ratio - 1) > ppo.clip) * mask
    new_state.update(policy=params, opt_state=opt_state, critic=critic,
                     critic_opt_state=critic_opt_state)
    return new_state, {**metrics, **norms, "loss": loss, "value_loss": v_loss,
                       "clip_fraction": clipped.sum() / jnp.maximum(mask.sum(), 1.0),
                       "baseline": (old_values[:, 0]).mean()}

  def eval_step(state, batch):
    sample_key, greedy_key = jax.random.split(jax.random.fold_in(jax.random.key(config.seed),
                                                                 EVAL_KEY))
    prompts, weight = batch["inputs"], batch["mask"]
    out = {"count": weight.sum()}
    for name, key, greedy in (("sampled", sample_key, False), ("greedy", greedy_key, True)):
      tokens, mask, rewards = rollout(state, prompts, key, greedy)
      out[f"reward_{name}"] = (rewards * weight).sum()
      out[f"ground_truth_{name}"] = (prose_score(tokens, mask) * weight).sum()
      out[f"response_length_{name}"] = (mask.sum(-1) * weight).sum()
      if not greedy:
        kl = ((log_probs(state["policy"], prompts, tokens)
               - log_probs(state["reference"], prompts, tokens)) * mask).sum(-1)
        out["kl"] = (kl * weight).sum()
    return out

  evaluators = {}
  for name, section in config.get("evals", {}).items():
    split = section.get("split", name)
    if split not in data.splits:
      raise ConfigError(f"config.evals.{name}.split={split!r} is not a split of this data set: "
                        f"{sorted(data.splits)}")
    evaluators[name] = over_split(eval_step, data.split(split), batch_size=section.batch_size,
                                  mesh=mesh)
  return Task(init=init, train_step=train_step, evaluators=evaluators)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates model, alignment, optimizers and evaluators (module docstring)."""
  del batch_sizes
  models.check(checker.section("model"), models.LANGUAGE_MODELS)
  check_single_device_attention(checker, mesh_sizes)
  al = checker.section("alignment")
  estimator = al.one_of("estimator", estimators.ESTIMATORS)
  al.non_negative("kl_coef")
  gamma = al.read("gamma")
  if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
    al.fail("gamma", "must be a number in (0, 1]")
  al.positive("reward_clip")
  al.positive("response_len", integer=True)
  al.positive("temperature")
  top_p = al.read("top_p")
  if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
    al.fail("top_p", "must be a number in (0, 1]")
  group = al.positive("group_size", integer=True)
  if estimator in estimators.GROUP_ESTIMATORS and group < 2:
    al.fail("group_size", f"must be at least 2 for estimator={estimator!r}")
  al.boolean("group_normalize")
  decay = al.read("moving_mean_decay")
  if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
    al.fail("moving_mean_decay", "must be a number in [0, 1)")
  al.one_of("reward", REWARDS)
  # A missing run is an error when the task is built (before anything is compiled): the
  # shipped config leaves it to the command line, and must validate without it.
  al.read("reward_workdir", default=None)
  al.read("reward_step", default=None)
  ppo = checker.section("alignment.ppo")
  for key in ("clip", "value_clip", "lam"):
    ppo.non_negative(key)
  ppo_gamma = ppo.read("gamma")
  if isinstance(ppo_gamma, bool) or not isinstance(ppo_gamma, (int, float)) or not (
      0 < ppo_gamma <= 1):
    ppo.fail("gamma", "must be a number in (0, 1]")
  ppo.positive("epochs", integer=True)
  ppo.reject_unread("config.alignment.ppo takes clip, value_clip, gamma, lam, epochs")
  al.reject_unread("see src/big_batch/rlhf/align_task.py for the fields of config.alignment")
  optim.check(checker.section("optimizers.policy"))
  optim.check(checker.section("optimizers.critic"))
  checker.section("optimizers").reject_unread("config.optimizers takes policy, critic")
  optim.check_batch_scaling(checker.section("batch"))
  top = checker.section()
  if top.has("evals"):
    for name in top.section("evals").keys():
      section = checker.section(f"evals.{name}")
      section.one_of("kind", KINDS, default="alignment")
      check_over_split(section, mesh_lib.shards(mesh_sizes), default_split=name)
