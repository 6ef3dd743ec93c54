"""Regression by mean squared error: the training round of batch active learning as a task.

Holzmüller et al. (JMLR 2023, §4.2) train an MLP on the labelled set by MSE with Adam before
each selection. Here that round is one trainer run: `config.train_subset` (a .npy of row
indices) restricts training to the labelled rows, the model is `config.model` (the package's
MLP, one output), and `config.optimizer` its optimizer. A batch with a 'weight' per row trains
on sum_i w_i (f(x_i) - y_i)^2 / sum_i w_i. Evaluators over a split report `mse`, `rmse` and
`mae` of the standardised target. `trained_model(workdir, config, input_dim)` gives back the
run's network as an NNX module, for the kernels of `select_batch`.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from big_batch import models, optim
from big_batch.tasks import single_model
from big_batch.tasks.common import Task, gradient_step, nnx_model


def _input_dim(data) -> int:
  return int(np.prod(data.train.read(np.arange(1))["input"].shape[1:]))


def new_model(config, input_dim: int, rng):
  """The regression network: `config.model` with one output."""
  return models.build(config.model, (input_dim,), 1, nnx.Rngs(rng))


def squared_and_absolute_errors(prediction, target, mask=None):
  """Per-row (f(x) - y)^2 and |f(x) - y| of a one-output prediction, weighted by `mask`."""
  residual = prediction[:, 0].astype(jnp.float32) - target
  squared, absolute = residual ** 2, jnp.abs(residual)
  if mask is not None:
    squared, absolute = squared * mask, absolute * mask
  return squared, absolute


def build(config, data, mesh, total_steps: int) -> Task:
  """MSE regression of `data`'s 'target' from its 'input' (module docstring)."""
  input_dim = _input_dim(data)
  optimizer = optim.build(config.optimizer, total_steps, batch=config.batch)
  graphdef, init = nnx_model(lambda rng: new_model(config, input_dim, rng), optimizer.tx)

  def forward(params, model_state, inputs):
    return nnx.merge(graphdef, params, model_state)(inputs.reshape(inputs.shape[0], -1))

  def loss_fn(params, model_state, batch):
    squared, absolute = squared_and_absolute_errors(
        forward(params, model_state, batch["input"]), batch["target"])
    weight = batch.get("weight")
    mean = (lambda v: v.mean()) if weight is None else (
        lambda v: (v * weight).sum() / weight.sum())
    return mean(squared), (model_state, {"mae": mean(absolute)})

  def train_step(state, batch):
    return gradient_step(loss_fn, optimizer, state, batch,
                         config.batch.get("accumulation_steps", 1),
                         config.batch.get("max_micro_batch"))

  def eval_step(state, batch):
    squared, absolute = squared_and_absolute_errors(
        forward(state["params"], state["model_state"], batch["input"]), batch["target"],
        batch["mask"])
    return {"mse": squared.sum(), "mae": absolute.sum(), "count": batch["mask"].sum()}

  split_evaluators = single_model.evaluators(
      config, data, mesh, eval_step,
      initial_params=lambda: init(jax.random.key(config.seed))["params"])

  def with_rmse(evaluate):
    def run(state):
      out = evaluate(state)
      if "mse" in out:
        out["rmse"] = float(np.sqrt(out["mse"]))
      return out
    return run

  return Task(init=init, train_step=train_step,
              evaluators={name: with_rmse(e) for name, e in split_evaluators.items()})


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates the fields this task reads: model, optimizer, batch accumulation, evals."""
  single_model.check(checker, mesh_sizes, batch_sizes, models.CLASSIFIERS)


def trained_model(workdir: str, config, input_dim: int):
  """The network of the newest checkpoint in `workdir` (a run of this task), as NNX."""
  directory = os.path.join(workdir, "checkpoints")
  step = max(int(name) for name in os.listdir(directory) if name.isdigit())
  path = os.path.join(directory, str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          checkpointer.metadata(path).item_metadata)
  params = checkpointer.restore(path, abstract)["params"]
  model = new_model(config, input_dim, jax.random.key(0))
  graphdef, state = nnx.split(model, nnx.Param)
  state.replace_by_pure_dict(jax.tree.map(jnp.asarray, params))
  return nnx.merge(graphdef, state)

