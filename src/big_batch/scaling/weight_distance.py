"""Distance of the weights from their initialization (Hoffer, Hubara & Soudry 2017, Sec. 3).

The paper models SGD as a "random walk on a random potential": ||w_t - w_0|| grows only
logarithmically in the number of updates t, so large batches (fewer updates) end closer to
w_0; plotted against log t this distance is the diagnostic of the paper.
"""
import jax
import jax.numpy as jnp
from flax import nnx


def _is_variable(x) -> bool:
  return isinstance(x, nnx.Variable)


def _named_leaves(tree) -> dict[str, jax.Array]:
  """'/'-joined path -> float32 array; an nnx Variable counts as one leaf named by its path."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_variable)
  return {
      jax.tree_util.keystr(path, simple=True, separator="/"):
          jnp.asarray(leaf.get_value() if _is_variable(leaf) else leaf, jnp.float32)
      for path, leaf in flat
  }


def weight_distance(params, initial_params) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(||w - w_0||, {path: ||w_i - w0_i||}): the global and per-leaf distances from init.

  ||w - w_0|| = sqrt(sum_i ||w_i - w0_i||^2) over the leaves i of `params`, computed in
  float32 (Hoffer et al. 2017, Sec. 3: it grows like log t). Paths are '/'-joined
  (e.g. 'layers/0/kernel'); works on plain pytrees and nnx States, and under `jax.jit`.
  """
  current, initial = _named_leaves(params), _named_leaves(initial_params)
  if current.keys() != initial.keys():
    raise ValueError(f"params and initial_params have different leaves: "
                     f"{sorted(current.keys() ^ initial.keys())}")
  squared = {name: jnp.sum(jnp.square(current[name] - initial[name])) for name in current}
  per_leaf = {name: jnp.sqrt(sq) for name, sq in squared.items()}
  return jnp.sqrt(sum(squared.values(), jnp.float32(0))), per_leaf
