"""The networks of SAC-N / EDAC / LB-SAC (An et al. 2021; Nikulin et al. 2022): an ensemble of
N Q-networks as one vectorized module and a tanh-Gaussian actor (the learned temperature is a
scalar log α in the agent's state, sac_n.py).

`EnsembleCritic` holds N MLP critics Q_j(s, a) (hidden ReLU layers, optional LayerNorm as in
LB-SAC's batch-scaling configs) built with `nnx.vmap` over a leading ensemble axis: every
parameter has shape (N, ...), so one matmul per layer evaluates all N critics, and the axis
may be sharded over a mesh axis (`offline_task.shardings`). `edac_init` is the reference
code's initialization (CORL `edac.py`, after the EDAC authors): hidden biases 0.1, the last
layer's weights and bias uniform in ±3e-3 (critics) or ±1e-3 (the actor's two heads).

`Actor` is the tanh-Gaussian policy: an MLP gives the mean u and log σ of a Gaussian
(log σ clipped to [-5, 2]); a = max_action · tanh(u + σ ε), and its log density is the
Gaussian's minus Σ log(1 − tanh²), computed stably as 2 (log 2 − x − softplus(−2x)).
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def _uniform(scale: float):
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -scale,
                                                                   scale)


class MLP(nnx.Module):
  """`num_layers` hidden ReLU layers of `hidden` units (each optionally followed by LayerNorm)
  and a linear output of `out` units."""

  def __init__(self, inputs: int, out: int, *, hidden: int, num_layers: int,
               layer_norm: bool = False, edac_init: bool = False, last_scale: float = 3e-3,
               rngs: nnx.Rngs):
    bias_init = nnx.initializers.constant(0.1) if edac_init else nnx.initializers.zeros_init()
    sizes = [inputs] + [hidden] * num_layers
    self.hidden = nnx.List([nnx.Linear(a, b, bias_init=bias_init, rngs=rngs)
                            for a, b in zip(sizes[:-1], sizes[1:])])
    self.norms = nnx.List([nnx.LayerNorm(hidden, rngs=rngs) for _ in range(num_layers)]
                          if layer_norm else [])
    last = {}
    if edac_init:
      last = dict(kernel_init=_uniform(last_scale), bias_init=_uniform(last_scale))
    self.out = nnx.Linear(sizes[-1], out, rngs=rngs, **last)

  def __call__(self, x):
    for i, layer in enumerate(self.hidden):
      x = layer(x)
      if len(self.norms):
        x = self.norms[i](x)
      x = jax.nn.relu(x)
    return self.out(x)


class EnsembleCritic(nnx.Module):
  """N critics Q_j(s, a) with parameters stacked on a leading axis of size N.

  `critic(observation [B, obs], action [B, act])` -> Q of shape (N, B): every critic on the
  same batch. `critic.members(observation [N, B, obs], action [N, B, act])` -> (N, B): critic
  j on its own batch j (EDAC's per-critic action gradients use it).
  """

  def __init__(self, observation_dim: int, action_dim: int, *, num_critics: int, hidden: int,
               num_layers: int, layer_norm: bool = False, edac_init: bool = False,
               rngs: nnx.Rngs):
    self.num_critics = num_critics

    @nnx.split_rngs(splits=num_critics)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(rngs):
      return MLP(observation_dim + action_dim, 1, hidden=hidden, num_layers=num_layers,
                 layer_norm=layer_norm, edac_init=edac_init, last_scale=3e-3, rngs=rngs)

    self.q = make(rngs)

  def __call__(self, observation, action):
    return self._apply(self.q, observation, action)

  def members(self, observation, action):
    return self._apply_each(self.q, observation, action)

  @staticmethod
  @nnx.vmap(in_axes=(0, None, None), out_axes=0)
  def _apply(q, observation, action):
    return q(jnp.concatenate([observation, action], -1))[..., 0]

  @staticmethod
  @nnx.vmap(in_axes=(0, 0, 0), out_axes=0)
  def _apply_each(q, observation, action):
    return q(jnp.concatenate([observation, action], -1))[..., 0]


class Actor(nnx.Module):
  """The tanh-Gaussian policy: `actor(observation, key)` -> (action, log π(action | s));
  `actor.deterministic(observation)` -> max_action · tanh(mean)."""

  def __init__(self, observation_dim: int, action_dim: int, *, max_action: float, hidden: int,
               num_layers: int, edac_init: bool = False, rngs: nnx.Rngs):
    self.action_dim, self.max_action = action_dim, float(max_action)
    self.trunk = MLP(observation_dim, 2 * action_dim, hidden=hidden, num_layers=num_layers,
                     edac_init=edac_init, last_scale=1e-3, rngs=rngs)

  def distribution(self, observation):
    """(mean, log σ) of the Gaussian before the tanh, log σ clipped to [-5, 2]."""
    out = self.trunk(observation)
    mean, log_std = out[..., :self.action_dim], out[..., self.action_dim:]
    return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)

  def __call__(self, observation, key):
    mean, log_std = self.distribution(observation)
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    x = mean + jnp.exp(log_std) * noise
    return self.max_action * jnp.tanh(x), tanh_gaussian_log_prob(x, noise, log_std)

  def deterministic(self, observation):
    return self.max_action * jnp.tanh(self.distribution(observation)[0])


def tanh_gaussian_log_prob(x, noise, log_std):
  """log density of tanh(x), x = mean + σ·noise ~ N(mean, σ²), summed over action dims:
  Σ [log N(noise; 0, 1) − log σ − log(1 − tanh(x)²)], the last term as
  2 (log 2 − x − softplus(−2x)) (SAC, Haarnoja et al. 2018, appendix C, eq. 21)."""
  gaussian = -0.5 * noise ** 2 - log_std - 0.5 * math.log(2 * math.pi)
  correction = 2.0 * (math.log(2.0) - x - jax.nn.softplus(-2.0 * x))
  return (gaussian - correction).sum(-1)
