"""Random network distillation (Burda et al., ICLR 2019): the bonus is the error of a
predictor trained to match a fixed random network, ||g(o) - f(o)||^2, large on rarely seen
observations. The agent (agent.py) divides it by the mean error of its first replay batch,
a fixed scale (the paper normalises by a running standard deviation of intrinsic returns,
which would keep visited states' bonus from decaying, unlike a count bonus)."""
import jax
import jax.numpy as jnp
import numpy as np


def init_mlp(rng, obs_dim: int, hidden: int, out: int):
  k1, k2 = jax.random.split(rng)
  return {"w1": jax.random.normal(k1, (obs_dim, hidden)) / np.sqrt(obs_dim),
          "b1": jnp.zeros(hidden), "w2": jax.random.normal(k2, (hidden, out)) / np.sqrt(hidden)}


def apply_mlp(params, x):
  return jax.nn.relu(x @ params["w1"] + params["b1"]) @ params["w2"]


def init(rng, obs_dim: int, hidden: int = 64, out: int = 16):
  """(target, predictor) parameters: two independently initialised MLPs."""
  k_target, k_predictor = jax.random.split(rng)
  return init_mlp(k_target, obs_dim, hidden, out), init_mlp(k_predictor, obs_dim, hidden, out)


def error(target, predictor, obs):
  """[B] ||g(o) - f(o)||^2 (f fixed)."""
  return jnp.sum((apply_mlp(predictor, obs) - jax.lax.stop_gradient(apply_mlp(target, obs))) ** 2,
                 -1)
