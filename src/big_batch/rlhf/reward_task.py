"""Reward modelling (RLHF stage 2) as a task: the Bradley-Terry loss (reward.py) on preference
pairs built in the step from `pydoc_text` windows of `preference.prompt_len` + response bytes.

Config: `model` (the LinearAttentionLM fields; the reward model is that body with a scalar
head), `optimizer`, `batch`, `preference` {prompt_len, max_corruption}; warm start the body
from a pretrained LM with `init_from.paths = {'params/lm': 'params'}`. Evaluators
(`config.evals.<name>`, over a split): the Bradley-Terry loss and the pairwise accuracy
against the prose score on pairs of held-out windows (a fixed key, so every evaluation scores
the same pairs); training logs the same on its own pairs (`accuracy`, and `tie_fraction`,
the pairs dropped as ties). Pair randomness is a function of (seed, step).
"""
import jax
from flax import nnx

from big_batch import models, optim
from big_batch.checks import ConfigError
from big_batch.rlhf import reward
from big_batch.tasks import single_model
from big_batch.tasks.common import Task, gradient_step, nnx_model

SECTIONS = ("preference",)
EVAL_KEY = 1_000_003  # folded into the seed: held-out pairs never share the training keys


def new_reward_model(model_config, rng):
  """RewardModel with the LM fields of `model_config` (its `name` aside)."""
  kwargs = {k: v for k, v in model_config.items() if k != "name"}
  return reward.RewardModel(**kwargs, rngs=nnx.Rngs(rng))


def build(config, data, mesh, total_steps: int) -> Task:
  """The reward-model task of the module docstring."""
  pref = config.preference
  optimizer = optim.build(config.optimizer, total_steps, batch=config.batch)
  graphdef, init = nnx_model(lambda rng: new_reward_model(config.model, rng), optimizer.tx)

  def pairs_of(key, batch):
    return reward.preference_pairs(key, batch["inputs"], pref.prompt_len, pref.max_corruption)

  def loss_fn(params, model_state, pairs):
    loss, correct = reward.bradley_terry(nnx.merge(graphdef, params, model_state), pairs)
    weight = pairs["weight"]
    total = jax.numpy.maximum(weight.sum(), 1.0)
    return (loss * weight).sum() / total, (model_state, {
        "accuracy": (correct * weight).sum() / total, "tie_fraction": 1.0 - weight.mean()})

  def train_step(state, batch):
    pairs = pairs_of(jax.random.fold_in(jax.random.key(config.seed), state["step"]), batch)
    return gradient_step(loss_fn, optimizer, state, pairs,
                         config.batch.get("accumulation_steps", 1),
                         config.batch.get("max_micro_batch"))

  def eval_step(state, batch):
    pairs = pairs_of(jax.random.fold_in(jax.random.key(config.seed), EVAL_KEY), batch)
    loss, correct = reward.bradley_terry(
        nnx.merge(graphdef, state["params"], state["model_state"]), pairs)
    weight = pairs["weight"] * batch["mask"]
    return {"loss": (loss * weight).sum(), "accuracy": (correct * weight).sum(),
            "count": weight.sum()}

  evaluators = single_model.evaluators(
      config, data, mesh, eval_step,
      initial_params=lambda: init(jax.random.key(config.seed))["params"])
  return Task(init=init, train_step=train_step, evaluators=evaluators)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates model, optimizer, batch, evaluators and `preference`; single-device attention."""
  single_model.check(checker, mesh_sizes, batch_sizes, models.LANGUAGE_MODELS)
  check_single_device_attention(checker, mesh_sizes)
  pref = checker.section("preference")
  prompt_len = pref.positive("prompt_len", integer=True)
  rate = pref.read("max_corruption")
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
    pref.fail("max_corruption", "must be a number in [0, 1]")
  pref.reject_unread("config.preference takes prompt_len, max_corruption")
  seq_len = checker.config.data.get("seq_len")
  if seq_len is None or seq_len <= prompt_len:
    raise ConfigError(f"config.data.seq_len={seq_len} must exceed config.preference.prompt_len="
                      f"{prompt_len}: the response is the rest of each window")


def check_single_device_attention(checker, mesh_sizes: dict) -> None:
  """RLHF decodes token by token: the attention must not be sequence parallel."""
  impl = checker.config.model.get("sequence_parallel", "blockwise")
  if impl not in ("blockwise", "dense"):
    raise ConfigError(f"config.model.sequence_parallel={impl!r}: RLHF needs 'blockwise' or "
                      "'dense' (it decodes one token at a time; sequences are short)")
  if mesh_sizes.get("seq", 1) > 1:
    raise ConfigError(f"config.mesh.seq={mesh_sizes['seq']}: RLHF shards only the batch")
