"""Supervised classification: softmax cross-entropy, accuracy, batch-norm state as mutable state.

The model is a Flax NNX module split once into a static graph and pure-dict state
({'params', 'model_state'}); the steps merge it back inside jit, so optax, orbax and the
sharding rules see plain arrays under '/'-joined paths. With `config.batch.accumulation_steps`
k > 1 the train step computes the gradient in k micro-batches (tasks/accumulation.py).
"""
import jax.numpy as jnp
import optax
from flax import nnx

from big_batch import models
from big_batch.tasks.accumulation import accumulate_gradients
from big_batch.tasks.common import Task, apply_gradients, nnx_model


def cross_entropy_and_accuracy(logits, labels, mask=None):
  """Per-example softmax cross-entropy and 0/1 correctness, each weighted by `mask`."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  if mask is not None:
    loss, correct = loss * mask, correct * mask
  return loss, correct


def build(config, data, tx: optax.GradientTransformation, schedule) -> Task:
  """The classification task for `config.model` on a data set with `data.num_classes`."""

  def new_model(rng):
    return models.build(config.model, data.input_shape, data.num_classes, nnx.Rngs(rng))

  graphdef, init = nnx_model(new_model, tx)
  accumulation_steps = config.batch.get("accumulation_steps", 1)

  def forward(params, model_state, inputs, train):
    model = nnx.merge(graphdef, params, model_state)
    model.train() if train else model.eval()
    logits = model(inputs)
    return logits, nnx.split(model, nnx.Param, ...)[2].to_pure_dict()

  def loss_fn(params, model_state, batch):
    logits, model_state = forward(params, model_state, batch["input"], train=True)
    loss, correct = cross_entropy_and_accuracy(logits, batch["label"])
    return loss.mean(), (model_state, correct.mean())

  def train_step(state, batch):
    loss, (model_state, accuracy), grads = accumulate_gradients(
        loss_fn, state["params"], state["model_state"], batch, accumulation_steps)
    state, metrics = apply_gradients(tx, state, grads, schedule)
    state["model_state"] = model_state
    return state, {**metrics, "loss": loss, "accuracy": accuracy}

  def eval_step(state, batch):
    logits, _ = forward(state["params"], state["model_state"], batch["input"], train=False)
    loss, correct = cross_entropy_and_accuracy(logits, batch["label"], batch["mask"])
    return {"loss": loss.sum(), "accuracy": correct.sum(), "count": batch["mask"].sum()}

  return Task(init=init, train_step=train_step, eval_step=eval_step)
