"""What every task shares: the Task triple and the optimizer update with its norm metrics."""
from typing import Callable, NamedTuple

import jax.numpy as jnp
import optax


class Task(NamedTuple):
  """init(rng) -> state; train_step(state, batch) -> (state, metrics);
  eval_step(state, batch) -> metric sums with a 'count' (divided by the trainer)."""
  init: Callable
  train_step: Callable
  eval_step: Callable


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
