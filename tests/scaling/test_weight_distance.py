"""||w - w_0|| globally and per leaf, against numpy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from big_batch.scaling.weight_distance import weight_distance


def _params(seed):
  rng = np.random.default_rng(seed)
  return {"dense": {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                    "bias": jnp.asarray(rng.normal(size=4), jnp.float32)},
          "layers": [jnp.asarray(rng.normal(size=(2, 2, 5)), jnp.float32)]}


def test_matches_numpy():
  params, initial = _params(0), _params(1)
  total, per_leaf = jax.jit(weight_distance)(params, initial)
  leaves = {"dense/kernel": lambda p: p["dense"]["kernel"],
            "dense/bias": lambda p: p["dense"]["bias"],
            "layers/0": lambda p: p["layers"][0]}
  expected = {name: np.linalg.norm(np.asarray(leaf(params), np.float64) - np.asarray(leaf(initial)))
              for name, leaf in leaves.items()}
  assert per_leaf.keys() == expected.keys()
  for name, norm in expected.items():
    np.testing.assert_allclose(per_leaf[name], norm, rtol=1e-6)
  np.testing.assert_allclose(total, np.sqrt(sum(n**2 for n in expected.values())), rtol=1e-6)


def test_zero_at_initialization():
  params = _params(0)
  total, per_leaf = weight_distance(params, params)
  assert float(total) == 0.0 and all(float(n) == 0.0 for n in per_leaf.values())


def test_half_precision_params_are_measured_in_float32():
  initial = jnp.zeros(20000, jnp.bfloat16)
  params = jnp.full(20000, 0.01, jnp.bfloat16)
  total, _ = weight_distance({"w": params}, {"w": initial})
  assert total.dtype == jnp.float32
  np.testing.assert_allclose(total, np.sqrt(20000) * float(params[0]), rtol=1e-6)


def test_nnx_state_leaves_are_named_by_their_path():
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  initial = nnx.clone(nnx.state(model, nnx.Param))
  model.kernel[...] = model.kernel[...] + 1.0
  total, per_leaf = weight_distance(nnx.state(model, nnx.Param), initial)
  assert sorted(per_leaf) == ["bias", "kernel"]
  np.testing.assert_allclose(per_leaf["kernel"], np.sqrt(6), rtol=1e-6)
  np.testing.assert_allclose(total, np.sqrt(6), rtol=1e-6)


def test_different_structures_are_rejected():
  with pytest.raises(ValueError, match="layers/0"):
    weight_distance(_params(0), {"dense": _params(1)["dense"]})
