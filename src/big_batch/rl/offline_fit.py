"""Fitting the SVD representation to a fixed set of transitions (logged with a behaviour
policy) by mini-batch Adam on the spectral objective (svd_representation.py; Chandak et al.
2023): replay rows for the attraction term, uniform anchors and negatives for the repulsion.
One `lax.scan`, vmappable over seeds."""
import jax
import jax.numpy as jnp
import optax

from big_batch.rl import svd_representation as svd


def fit(states, next_states, num_states: int, kind: str, rank: int, rng, obs=None,
        steps: int = 3000, batch: int = 256, learning_rate: float = 1e-2, hidden: int = 128,
        init_scale: float = 0.1):
  """(phi, psi) [num_states, rank] of every state after `steps` Adam steps (cosine-decayed
  learning rate) on mini-batches of `batch` transitions, anchors and negatives."""
  k_init, k_run = jax.random.split(rng)
  params = svd.init_encoder(k_init, kind, rank, num_states, 0 if obs is None else obs.shape[1],
                            hidden, init_scale)
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  states, next_states = jnp.asarray(states), jnp.asarray(next_states)
  observe = None if obs is None else (lambda i: jnp.asarray(obs)[i])

  def step(carry, key):
    p, o = carry
    k1, k2, k3 = jax.random.split(key, 3)
    rows = jax.random.randint(k1, (batch,), 0, states.shape[0])
    b = {"state": states[rows], "next_state": next_states[rows],
         "anchor": jax.random.randint(k2, (batch,), 0, num_states),
         "negative": jax.random.randint(k3, (batch,), 0, num_states)}
    g = jax.grad(lambda p: svd.loss_on_batch(p, b, float(num_states) ** 2, observe)[0])(p)
    u, o = tx.update(g, o, p)
    return (optax.apply_updates(p, u), o), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(k_run, steps))
  every = jnp.arange(num_states) if obs is None else jnp.asarray(obs)
  return svd.encode(params["phi"], every), svd.encode(params["psi"], every)
