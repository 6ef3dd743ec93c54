"""Supervised classification: softmax cross-entropy, accuracy, batch-norm state as mutable state.

The model is a Flax NNX module split once into a static graph and pure-dict state
({'params', 'model_state'}); the steps merge it back inside jit, so optax, orbax and the
sharding rules see plain arrays under '/'-joined paths. `config.batch.accumulation_steps`
k > 1 (or `max_micro_batch`) computes the gradient in micro-batches (tasks/accumulation.py).
A batch with a 'weight' per row (a task's `select`, e.g. a weighted coreset) is trained on
the weighted mean loss sum_i w_i l_i / sum_i w_i.

Evaluators (`config.evals`): `<name>: {every, split, batch_size}` evaluates over a split
(loss and accuracy); `weight_distance: {every}` logs ||w - w_0|| (Hoffer et al. 2017).
"""
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from big_batch import models, optim
from big_batch.tasks import single_model
from big_batch.tasks.common import Task, gradient_step, nnx_model


def cross_entropy_and_accuracy(logits, labels, mask=None):
  """Per-example softmax cross-entropy and 0/1 correctness, each weighted by `mask`."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  if mask is not None:
    loss, correct = loss * mask, correct * mask
  return loss, correct


def weighted_mean(values, weight=None):
  """sum_i w_i v_i / sum_i w_i, or the plain mean without weights."""
  if weight is None:
    return values.mean()
  return (values * weight).sum() / weight.sum()


def build(config, data, mesh, total_steps: int) -> Task:
  """The classification task for `config.model` on a data set with `data.num_classes`."""

  def new_model(rng):
    return models.build(config.model, data.input_shape, data.num_classes, nnx.Rngs(rng))

  optimizer = optim.build(config.optimizer, total_steps, batch=config.batch)
  graphdef, init = nnx_model(new_model, optimizer.tx)

  def forward(params, model_state, inputs, train):
    model = nnx.merge(graphdef, params, model_state)
    model.train() if train else model.eval()
    logits = model(inputs)
    return logits, nnx.split(model, nnx.Param, ...)[2].to_pure_dict()

  def loss_fn(params, model_state, batch):
    logits, model_state = forward(params, model_state, batch["input"], train=True)
    loss, correct = cross_entropy_and_accuracy(logits, batch["label"])
    weight = batch.get("weight")
    return weighted_mean(loss, weight), (model_state,
                                         {"accuracy": weighted_mean(correct, weight)})

  def train_step(state, batch):
    return gradient_step(loss_fn, optimizer, state, batch,
                         config.batch.get("accumulation_steps", 1),
                         config.batch.get("max_micro_batch"))

  def eval_step(state, batch):
    logits, _ = forward(state["params"], state["model_state"], batch["input"], train=False)
    loss, correct = cross_entropy_and_accuracy(logits, batch["label"], batch["mask"])
    return {"loss": loss.sum(), "accuracy": correct.sum(), "count": batch["mask"].sum()}

  evaluators = single_model.evaluators(
      config, data, mesh, eval_step,
      initial_params=lambda: init(jax.random.key(config.seed))["params"])
  return Task(init=init, train_step=train_step, evaluators=evaluators)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates the fields this task reads: model, optimizer, batch accumulation, evals."""
  single_model.check(checker, mesh_sizes, batch_sizes, models.CLASSIFIERS)
