"""Stale gradients and their compensation: Pipelined Backpropagation (Kosson et al. 2021).

    >>> from big_batch.optim import delayed
    >>> tx = delayed.sgd_spike_compensation(0.1, momentum=0.9, delays=4)
    >>> stale = delayed.delayed(optax.sgd(0.1, momentum=0.9), delays=4)

In fine-grained pipelined backpropagation (arXiv 2003.11666) stage s applies gradients
computed on weights D_s updates old. The pieces here, each per leaf with its own D (an int,
or a pytree of ints shaped like the parameters):

  delayed(inner, delays):        g_t -> g_{t-D}: the staleness a pipeline stage sees (zeros
                                 while the pipeline fills);
  spike_compensation(m, delays): v <- m v + g;  u = a v + b g,  a = m^D, b = (1 - m^D)/(1 - m)
                                 (Spike Compensation): the missed part of a stale
                                 gradient's momentum impulse response is applied at arrival;
  linear_weight_prediction(delays), predict_weights, predict_with_velocity:
                                 w_hat = w + D (w_t - w_{t-1})  (weight-difference form), or
                                 w_hat = w - lr D v  (momentum-SGD form); the forward pass of a
                                 stage uses w_hat (Linear Weight Prediction).

The formulas follow /work/shared/reference/parallelism.md §10; the abstract was checked
against the paper, the equations were not (the PDF's body was not reachable), so the exact
indexing of D is this module's, stated in each docstring.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Delays = Any  # An int, or a pytree of ints with the parameters' structure.


def _per_leaf(delays: Delays, tree) -> list[int]:
  """One int delay per leaf of `tree`; a bare int applies to every leaf."""
  leaves = jax.tree.leaves(tree)
  if isinstance(delays, int):
    out = [delays] * len(leaves)
  else:
    out = [int(d) for d in jax.tree.leaves(delays)]
    if len(out) != len(leaves):
      raise ValueError(f"delays has {len(out)} leaves, the parameters {len(leaves)}")
  for d in out:
    if d < 0:
      raise ValueError(f"delays must be >= 0, got {d}")
  return out


def _map_with_delays(fn, delays, *trees):
  """fn(delay, *leaves) over the leaves of `trees`, one delay per leaf."""
  treedef = jax.tree.structure(trees[0])
  leaves = [treedef.flatten_up_to(t) for t in trees]
  per_leaf = _per_leaf(delays, trees[0])
  return treedef.unflatten([fn(d, *xs) for d, *xs in zip(per_leaf, *leaves)])


class DelayedState(NamedTuple):
  """A ring buffer of the last D gradients per leaf (shape [D, ...]; a scalar for D = 0)."""
  count: jax.Array
  buffer: Any
  inner: Any


def delayed(inner: optax.GradientTransformation, delays: Delays) -> optax.GradientTransformation:
  """`inner` fed the gradient of D steps ago: g_t -> g_{t-D}, zeros for t < D.

  The stale-gradient model of pipelined backpropagation (Kosson et al. 2021;
  w_{t+1} = w_t - lr * g(w_{t-D})), with D per leaf (per pipeline stage). D = 0 is `inner`.
  """

  def init(params):
    # A scalar stands in for D = 0 leaves: checkpoints (orbax) cannot hold empty arrays.
    buffer = _map_with_delays(lambda d, p: jnp.zeros((d, *p.shape) if d else (), p.dtype),
                              delays, params)
    return DelayedState(jnp.zeros((), jnp.int32), buffer, inner.init(params))

  def update(grads, state, params=None):
    slot = lambda d: state.count % d
    stale = _map_with_delays(lambda d, g, ring: g if d == 0 else ring[slot(d)], delays, grads,
                             state.buffer)
    buffer = _map_with_delays(lambda d, g, ring: ring if d == 0 else ring.at[slot(d)].set(g),
                              delays, grads, state.buffer)
    updates, inner_state = inner.update(stale, state.inner, params)
    return updates, DelayedState(state.count + 1, buffer, inner_state)

  return optax.GradientTransformation(init, update)


def spike_coefficients(momentum: float, delay: int) -> tuple[float, float]:
  """(a, b) = (m^D, (1 - m^D) / (1 - m)) of Spike Compensation (Kosson et al. 2021).

  parallelism.md §10.3. D = 0 gives (1, 0); m = 0 and D > 0 give (0, 1): plain SGD has no
  momentum to compensate.
  """
  a = momentum ** delay
  b = float(delay) if momentum == 1.0 else (1.0 - a) / (1.0 - momentum)
  return a, b


class SpikeCompensationState(NamedTuple):
  """The momentum buffer v (optax.trace's, heavy-ball form)."""
  velocity: Any


def spike_compensation(momentum: float, delays: Delays) -> optax.GradientTransformation:
  """v <- m v + g;  u = a v + b g  with a = m^D, b = (1 - m^D)/(1 - m) per leaf.

  Spike Compensation (Kosson et al. 2021; parallelism.md §10.3): a gradient D
  steps stale missed its first D momentum contributions sum_{k<D} m^k = b; SC applies them
  at once (the spike) and scales the rest by a = m^D, so from arrival on its contributions
  are (a + b), a m, a m^2, ...: those of the undelayed gradient, same total 1/(1 - m).
  Chain with a learning rate: `sgd_spike_compensation`. D = 0 is `optax.trace(m)`.
  """

  def init(params):
    return SpikeCompensationState(jax.tree.map(jnp.zeros_like, params))

  def update(grads, state, params=None):
    del params
    velocity = jax.tree.map(lambda v, g: momentum * v + g, state.velocity, grads)

    def compensate(d, v, g):
      a, b = spike_coefficients(momentum, d)
      return v if d == 0 else (a * v + b * g).astype(v.dtype)

    return _map_with_delays(compensate, delays, velocity, grads), SpikeCompensationState(velocity)

  return optax.GradientTransformation(init, update)


def sgd_spike_compensation(learning_rate, momentum: float = 0.9, delays: Delays = 0,
                           weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Momentum SGD with Spike Compensation: w <- w - lr (a v + b g) (Kosson et al. 2021).

  L2 weight decay is added to the gradient first (as optim.sgd). delays = 0 is exactly
  `optax.sgd(learning_rate, momentum)`.
  """
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     spike_compensation(momentum, delays),
                     optax.scale_by_learning_rate(learning_rate))


def delayed_sgd(learning_rate, momentum: float = 0.9, delay: int = 0,
                spike_compensation: bool = False, weight_decay: float = 0.0):
  """Momentum SGD on gradients `delay` steps stale, with or without Spike Compensation.

  The registry's form (one delay for every leaf, `optim.build` name 'delayed_sgd'):
  delayed(sgd or sgd_spike_compensation, delay) (Kosson et al. 2021).
  """
  inner = sgd_spike_compensation(learning_rate, momentum, delay if spike_compensation else 0,
                                 weight_decay)
  return delayed(inner, delay)


class LinearWeightPredictionState(NamedTuple):
  """The last update applied, u_t = w_{t+1} - w_t."""
  last_update: Any


def linear_weight_prediction(delays: Delays) -> optax.GradientTransformation:
  """Identity on updates that remembers the last one, for `predict_weights`.

  Put it last in a chain: its state holds w_{t+1} - w_t of any optimizer (the
  weight-difference form of Linear Weight Prediction, Kosson et al. 2021).
  `delays` is validated against the parameters at init, so a mismatch fails early.
  """

  def init(params):
    _per_leaf(delays, params)
    return LinearWeightPredictionState(jax.tree.map(jnp.zeros_like, params))

  def update(updates, state, params=None):
    del state, params
    return updates, LinearWeightPredictionState(updates)

  return optax.GradientTransformation(init, update)


def predict_weights(params, state: LinearWeightPredictionState, delays: Delays):
  """w_hat = w + D (w_t - w_{t-1}): the weights D updates ahead, extrapolated linearly.

  Linear Weight Prediction, weight-difference form (Kosson et al. 2021;
  parallelism.md §10.4); `state` from `linear_weight_prediction`.
  """
  return _map_with_delays(lambda d, w, u: w + d * u, delays, params, state.last_update)


def predict_with_velocity(params, velocity, learning_rate, delays: Delays):
  """w_hat = w - lr D v: Linear Weight Prediction for momentum SGD (Kosson et al. 2021).

  parallelism.md §10.4.
  For plain momentum SGD (w_{t+1} = w_t - lr v_{t+1}) it equals `predict_weights`.
  """
  return _map_with_delays(lambda d, w, v: w - learning_rate * d * v, delays, params, velocity)
