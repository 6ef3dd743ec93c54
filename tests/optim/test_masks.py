"""Masks of big_batch.optim.masks on the parameters of a Flax NNX model."""
import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from big_batch.optim import masks


class _ConvNet(nnx.Module):
  """Every kind of leaf the masks must tell apart: kernels, biases, norm scales and offsets."""

  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
    self.bn = nnx.BatchNorm(4, rngs=rngs)
    self.dense = nnx.Linear(4, 2, rngs=rngs)
    self.ln = nnx.LayerNorm(2, rngs=rngs)


def _params():
  return nnx.state(_ConvNet(nnx.Rngs(0)), nnx.Param).to_pure_dict()


def test_exclude_bias_and_norm_selects_only_kernels():
  assert masks.exclude_bias_and_norm(_params()) == {
      "conv": {"kernel": True, "bias": False},
      "bn": {"scale": False, "bias": False},
      "dense": {"kernel": True, "bias": False},
      "ln": {"scale": False, "bias": False},
  }


def test_exclude_bias_and_norm_excludes_scalars():
  assert masks.exclude_bias_and_norm({"temperature": jnp.ones(()), "w": jnp.ones((2, 2))}) == {
      "temperature": False, "w": True}


def test_all_params_selects_everything():
  assert all(jax.tree.leaves(masks.all_params(_params())))


def test_mask_restricts_weight_decay_to_kernels():
  """As an optax mask: only the kernels receive the decay term."""
  params = _params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  decay = optax.add_decayed_weights(0.5, masks.exclude_bias_and_norm)
  decayed, _ = decay.update(zeros, decay.init(params), params)
  for (path, leaf), param in zip(jax.tree.leaves_with_path(decayed), jax.tree.leaves(params)):
    expected = 0.5 * param if path[-1].key == "kernel" else jnp.zeros_like(param)
    assert jnp.array_equal(leaf, expected), jax.tree_util.keystr(path)


def test_get_resolves_names():
  assert masks.get("exclude_bias_and_norm") is masks.exclude_bias_and_norm
  assert masks.get("all") is masks.all_params
  assert masks.get(None) is None
  with pytest.raises(ValueError, match="'exclude_biases'"):
    masks.get("exclude_biases")
