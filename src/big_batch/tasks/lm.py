"""Causal language modelling: next-token cross-entropy of a decoder-only model over bytes.

A batch holds sequences `inputs` x and `targets` y, y_i = x_{i+1} (data/builders/pydoc_text.py),
int32 [B, N]. With p_θ the model's softmax over the vocabulary at each position,

    loss          = −1/(B N) Σ_b Σ_i ln p_θ(y_bi | x_b1 .. x_bi)   (nats per token),
    bits_per_byte = loss / ln 2                                     (bits per token = per byte
                                                                     for byte-level tokens),
    accuracy      = 1/(B N) Σ_b Σ_i [argmax p_θ(· | x_b≤i) = y_bi].

Evaluation (`config.evals.<name>`, over a split) sums the same per-token quantities over the examples whose 'mask' is 1 and counts
their tokens, so the trainer's sum / count is the mean per token over the split.

The model is `config.model` from `models.LANGUAGE_MODELS`. With a sequence-parallel model
(`sequence_parallel` 'lasp1' or 'lasp2') the model lays its tokens out with the batch over
('data', 'fsdp') and the sequence over 'seq', and the targets are laid out the same way here,
so the per-token loss needs no communication.
"""
import math

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from big_batch import models, optim
from big_batch.checks import ConfigError
from big_batch.parallel import lasp
from big_batch.tasks import single_model
from big_batch.tasks.common import Task, gradient_step, nnx_model

SEQUENCE_SHARDED = ("lasp1", "lasp2")


def next_token_loss_and_accuracy(logits, targets):
  """Per-token softmax cross-entropy (nats) and 0/1 correctness of the argmax, [B, N] each."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return loss, correct


def build(config, data, mesh, total_steps: int) -> Task:
  """The causal-LM task for `config.model` (sequences carry their own targets)."""
  shard_targets = config.model.get("sequence_parallel") in SEQUENCE_SHARDED

  def new_model(rng):
    return models.build_language_model(config.model, nnx.Rngs(rng))

  optimizer = optim.build(config.optimizer, total_steps, batch=config.batch)
  graphdef, init = nnx_model(new_model, optimizer.tx)

  def forward(params, model_state, batch):
    logits = nnx.merge(graphdef, params, model_state)(batch["inputs"])
    targets = lasp.shard_sequence(batch["targets"]) if shard_targets else batch["targets"]
    return next_token_loss_and_accuracy(logits, targets)

  def loss_fn(params, model_state, batch):
    loss, correct = forward(params, model_state, batch)
    return loss.mean(), (model_state, {"accuracy": correct.mean()})

  def train_step(state, batch):
    state, metrics = gradient_step(loss_fn, optimizer, state, batch,
                                   config.batch.get("accumulation_steps", 1),
                                   config.batch.get("max_micro_batch"))
    return state, {**metrics, "bits_per_byte": metrics["loss"] / math.log(2)}

  def eval_step(state, batch):
    loss, correct = forward(state["params"], state["model_state"], batch)
    mask = batch["mask"][:, None]
    return {"loss": (loss * mask).sum(), "bits_per_byte": (loss * mask).sum() / math.log(2),
            "accuracy": (correct * mask).sum(), "count": mask.sum() * loss.shape[1]}

  evaluators = single_model.evaluators(
      config, data, mesh, eval_step,
      initial_params=lambda: init(jax.random.key(config.seed))["params"])
  return Task(init=init, train_step=train_step, evaluators=evaluators)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates the fields this task reads; only LASP shards the sequence.

  On any other attention the `seq` devices would all compute the same thing
  (models/linear_attention_lm.py, parallel/lasp.py).
  """
  single_model.check(checker, mesh_sizes, batch_sizes, models.LANGUAGE_MODELS)
  impl = checker.config.model.get("sequence_parallel", "blockwise")
  if mesh_sizes.get("seq", 1) > 1 and impl not in SEQUENCE_SHARDED:
    raise ConfigError(f"config.mesh.seq={mesh_sizes['seq']} shards the sequence, which "
                      f"config.model.sequence_parallel={impl!r} does not: use 'lasp1' or "
                      "'lasp2'")
