"""Fit the package's NNX MLP to a labelled subset by MSE: one jitted loop, vmapped over inits.

The training round of batch active learning (Holzmüller et al., JMLR 2023, §4.2: Adam with the
learning rate decayed linearly to 0, MSE; here a fixed step count on minibatches drawn with
replacement from the labelled rows, without the paper's best-validation-epoch selection). The
labelled rows are a padded index vector, so a growing labelled set never recompiles.
"""
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from big_batch.models.mlp import MLP


def make_model(key, input_dim: int, output_dim: int, hidden) -> MLP:
  """The package's MLP (norm='none'), initialised from `key`."""
  return MLP((input_dim,), output_dim, hidden=tuple(hidden), rngs=nnx.Rngs(params=key))


@functools.partial(jax.jit, static_argnames=("input_dim", "output_dim", "hidden", "steps",
                                             "batch_size"))
def fit(keys, x, y, labelled, num_labelled, *, input_dim, output_dim, hidden, steps=1000,
        batch_size=64, lr=3e-3):
  """Train one MLP per key on rows labelled[:num_labelled] of (x, y); returns their states.

  keys: (m,) PRNG keys (initialisation and minibatch order); labelled: padded row indices.
  """
  graphdef = nnx.graphdef(make_model(jax.random.key(0), input_dim, output_dim, hidden))
  tx = optax.adam(optax.linear_schedule(lr, 0.0, steps))

  def one(key):
    init_key, data_key = jax.random.split(key)
    params = nnx.state(make_model(init_key, input_dim, output_dim, hidden))

    def loss(p, rows):
      pred = nnx.merge(graphdef, p)(x[rows])
      return jnp.mean((pred - y[rows]) ** 2)

    def step(carry, k):
      p, opt = carry
      rows = labelled[jax.random.randint(k, (batch_size,), 0, num_labelled)]
      g = jax.grad(loss)(p, rows)
      updates, opt = tx.update(g, opt, p)
      return (optax.apply_updates(p, updates), opt), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)),
                                  jax.random.split(data_key, steps))
    return params

  return jax.vmap(one)(keys)


def model_from_states(states, index: int, input_dim, output_dim, hidden) -> MLP:
  """The `index`-th trained model of `fit`'s stacked states, as an NNX module."""
  graphdef = nnx.graphdef(make_model(jax.random.key(0), input_dim, output_dim, hidden))
  return nnx.merge(graphdef, jax.tree.map(lambda a: a[index], states))


@functools.partial(jax.jit, static_argnames=("input_dim", "output_dim", "hidden"))
def predict(states, x, *, input_dim, output_dim, hidden):
  """Predictions (m, n, output_dim) of every trained model in `states`."""
  graphdef = nnx.graphdef(make_model(jax.random.key(0), input_dim, output_dim, hidden))
  return jax.vmap(lambda s: nnx.merge(graphdef, s)(x))(states)
