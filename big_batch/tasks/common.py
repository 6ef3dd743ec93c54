"""What every task shares: the Task triple and the optimizer update with its norm metrics."""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx


class Task(NamedTuple):
  """init(rng) -> state; train_step(state, batch) -> (state, metrics);
  eval_step(state, batch) -> metric sums with a 'count' (divided by the trainer)."""
  init: Callable
  train_step: Callable
  eval_step: Callable


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


def apply_gradients(tx, state, grads, schedule):
  """One optimizer update of state['params']; returns the new state and its norm metrics.

  The metrics are the global l2 norms of the gradients, parameters and updates (float32)
  and the learning rate of this step.
  """
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  metrics = {
      "grad_norm": optax.global_norm(grads).astype(jnp.float32),
      "param_norm": optax.global_norm(params).astype(jnp.float32),
      "update_norm": optax.global_norm(updates).astype(jnp.float32),
      "learning_rate": jnp.asarray(schedule(state["step"]), jnp.float32),
  }
  new_state = {**state, "step": state["step"] + 1, "params": params, "opt_state": opt_state}
  return new_state, metrics
