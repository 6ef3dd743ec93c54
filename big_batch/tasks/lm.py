"""Causal language modelling: next-token cross-entropy of a decoder-only model over bytes.

A batch holds sequences `inputs` x and `targets` y, y_i = x_{i+1} (data/builders/pydoc_text.py),
int32 [B, N]. With p_θ the model's softmax over the vocabulary at each position,

    loss          = −1/(B N) Σ_b Σ_i ln p_θ(y_bi | x_b1 .. x_bi)   (nats per token),
    bits_per_byte = loss / ln 2                                     (bits per token = per byte
                                                                     for byte-level tokens),
    accuracy      = 1/(B N) Σ_b Σ_i [argmax p_θ(· | x_b≤i) = y_bi].

Evaluation sums the same per-token quantities over the examples whose 'mask' is 1 and counts
their tokens, so the trainer's sum / count is the mean per token over the split.

The model is `config.model` from `models.LANGUAGE_MODELS`. With a sequence-parallel model
(`sequence_parallel` 'lasp1' or 'lasp2') the model lays its tokens out over ('data', 'seq'),
and the targets are laid out the same way here, so the per-token loss needs no communication.
"""
import math

import jax.numpy as jnp
import optax
from flax import nnx

from big_batch import models
from big_batch.parallel import lasp
from big_batch.tasks.accumulation import accumulate_gradients
from big_batch.tasks.common import Task, apply_gradients, nnx_model

SEQUENCE_SHARDED = ("lasp1", "lasp2")


def next_token_loss_and_accuracy(logits, targets):
  """Per-token softmax cross-entropy (nats) and 0/1 correctness of the argmax, [B, N] each."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return loss, correct


def build(config, data, tx: optax.GradientTransformation, schedule) -> Task:
  """The causal-LM task for `config.model`; `data` is unused (sequences carry their targets)."""
  del data
  shard_targets = config.model.get("sequence_parallel") in SEQUENCE_SHARDED

  def new_model(rng):
    return models.build_language_model(config.model, nnx.Rngs(rng))

  graphdef, init = nnx_model(new_model, tx)
  accumulation_steps = config.batch.get("accumulation_steps", 1)

  def forward(params, model_state, batch):
    logits = nnx.merge(graphdef, params, model_state)(batch["inputs"])
    targets = lasp.shard_sequence(batch["targets"]) if shard_targets else batch["targets"]
    return next_token_loss_and_accuracy(logits, targets)

  def loss_fn(params, model_state, batch):
    loss, correct = forward(params, model_state, batch)
    return loss.mean(), (model_state, {"accuracy": correct.mean()})

  def train_step(state, batch):
    loss, (_, aux), grads = accumulate_gradients(
        loss_fn, state["params"], state["model_state"], batch, accumulation_steps)
    state, metrics = apply_gradients(tx, state, grads, schedule)
    return state, {**metrics, **aux, "loss": loss, "bits_per_byte": loss / math.log(2)}

  def eval_step(state, batch):
    loss, correct = forward(state["params"], state["model_state"], batch)
    mask = batch["mask"][:, None]
    return {"loss": (loss * mask).sum(), "bits_per_byte": (loss * mask).sum() / math.log(2),
            "accuracy": (correct * mask).sum(), "count": mask.sum() * loss.shape[1]}

  return Task(init=init, train_step=train_step, eval_step=eval_step)
