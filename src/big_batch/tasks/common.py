"""The task protocol, and what single-model tasks share: NNX state set-up and the gradient step.

A task is built once, `build(config, data, mesh, total_steps) -> Task`, and is a NamedTuple
of functions (docs/architecture.md). The trainer calls them and knows nothing else of it.
"""
import types
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from big_batch.optim import Optimizer
from big_batch.parallel.mesh import BATCH_AXES
from big_batch.tasks.accumulation import accumulate_gradients, steps_for

State = Any
Batch = dict
Metrics = dict


class Task(NamedTuple):
  """What a task gives the trainer.

  init(rng) -> state: pure; the state may hold several models and optimizer states, frozen
    references, an rng key. The trainer shards it, checkpoints it and donates it to steps.
  train_step(state, batch) -> (state, metrics): pure and jitted by the trainer; metrics are
    scalars (or small arrays) and hold 'loss', which the trainer checks is finite.
  evaluators: name -> evaluator(state) -> {metric: float}, host side, run every
    `config.evals.<name>.every` steps and at the end (`big_batch.evals`).
  shardings(abstract_state, mesh) -> a NamedSharding per leaf; None: `config.sharding` and
    `config.sharding_rules` (parallel/sharding.py).
  select(state, candidates) -> (state, rows): host side, before each step. `candidates` are
    the training-example indices the trainer's seeded order offers (`config.batch.pool_size`
    of them, default the batch size); `rows` are the indices to train on, or a dict
    {'index': indices, <name>: per-row array, ...} whose other arrays join the batch (e.g.
    'weight'). Anything it must remember lives in the state, so a resumed run selects alike.
  batch_size(state) -> int: host side, before each step: the global batch size the task wants
    (rounded up by the trainer to `config.batch`'s grid); None: `config.batch.size` and
    `config.batch.schedule`. Reading the state syncs with the device once per step.
  batch_axes: the mesh axes the batch's leading dimension is split over.
  """
  init: Callable[[jax.Array], State]
  train_step: Callable[[State, Batch], tuple[State, Metrics]]
  evaluators: Mapping[str, Callable[[State], dict]] = types.MappingProxyType({})
  shardings: Callable[[State, Mesh], Any] | None = None
  select: Callable[[State, np.ndarray], tuple[State, Any]] | None = None
  batch_size: Callable[[State], int] | None = None
  batch_axes: tuple[str, ...] = BATCH_AXES


def nnx_model(new_model: Callable, tx: optax.GradientTransformation):
  """(graphdef, init) for the NNX module that `new_model(rng)` builds.

  graphdef is the module's static structure (from shapes only, no compute); init(rng) builds
  the module and returns the initial task state {'step', 'params', 'model_state',
  'opt_state'} as pure dicts of arrays: `nnx.merge(graphdef, params, model_state)` inside a
  step gives the module back.
  """
  graphdef = nnx.split(nnx.eval_shape(lambda: new_model(jax.random.key(0))))[0]

  def init(rng):
    _, params, model_state = nnx.split(new_model(rng), nnx.Param, ...)
    params = params.to_pure_dict()
    return {"step": jnp.zeros((), jnp.int32), "params": params,
            "model_state": model_state.to_pure_dict(), "opt_state": tx.init(params)}

  return graphdef, init


def apply_gradients(optimizer: Optimizer, params, opt_state, grads, step):
  """One optimizer update; returns (params, opt_state, metrics).

  The metrics are the global l2 norms of the gradients, parameters and updates (float32)
  and the learning rate of `step`.
  """
  updates, opt_state = optimizer.tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  metrics = {
      "grad_norm": optax.global_norm(grads).astype(jnp.float32),
      "param_norm": optax.global_norm(params).astype(jnp.float32),
      "update_norm": optax.global_norm(updates).astype(jnp.float32),
      "learning_rate": jnp.asarray(optimizer.learning_rate(step), jnp.float32),
  }
  return params, opt_state, metrics


def gradient_step(loss_fn, optimizer: Optimizer, state, batch, accumulation_steps: int = 1,
                  max_micro_batch: int | None = None, shards: int | None = None):
  """The gradient of `loss_fn` on `batch` and one optimizer update of the standard state.

  `loss_fn(params, model_state, batch) -> (loss, (model_state, aux))`, loss the mean over the
  batch and aux a dict of per-batch means. The state is {'step', 'params', 'model_state',
  'opt_state', ...}. The batch is split into micro-batches (tasks/accumulation.py): at least
  `accumulation_steps`, and more where a device's share would exceed `max_micro_batch` rows.
  `shards` is the number of devices the batch is split over (default: the mesh's batch axes).
  Returns (state, metrics) with metrics {'loss', **aux, norms, 'learning_rate'}.
  """
  rows = jax.tree.leaves(batch)[0].shape[0]
  steps = steps_for(rows, shards, accumulation_steps, max_micro_batch)
  loss, (model_state, aux), grads = accumulate_gradients(
      loss_fn, state["params"], state["model_state"], batch, steps, shards)
  params, opt_state, metrics = apply_gradients(optimizer, state["params"], state["opt_state"],
                                               grads, state["step"])
  new_state = {**state, "step": state["step"] + 1, "params": params, "opt_state": opt_state,
               "model_state": model_state}
  return new_state, {**metrics, **aux, "loss": loss}
