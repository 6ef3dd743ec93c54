"""Compressors (decentralized/compressors.py): contraction bounds and what crosses the wire."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.decentralized import compressors


def vectors(size, count=20, seed=0):
  return np.random.default_rng(seed).standard_t(3, size=(count, size)).astype(np.float32)


@pytest.mark.parametrize("size, fraction", [(100, 0.3), (37, 0.4), (10, 0.05), (1000, 0.01)])
def test_top_k_sends_k_values_and_int32_indices_and_contracts(size, fraction):
  q = compressors.top_k(size, fraction)
  k = math.ceil(fraction * size)
  for x in vectors(size):
    payload = q.encode(jnp.asarray(x), None)
    assert payload["value"].shape == (k,) and payload["index"].dtype == jnp.int32
    assert payload["index"].shape == (k,)
    out = np.asarray(q.decode(payload))
    # The k largest magnitudes, from numpy's sort.
    keep = np.argsort(-np.abs(x))[:k]
    expected = np.zeros_like(x)
    expected[keep] = x[keep]
    np.testing.assert_array_equal(out, expected)
    # ||Q(x) - x||^2 <= (1 - p) ||x||^2 (Yan et al. 2023, Assumption 4; Top30: 0.7).
    assert np.sum((out - x) ** 2) <= (1 - fraction) * np.sum(x ** 2) * (1 + 1e-6)
  assert q.delta == pytest.approx(k / size)


def test_random_k_contracts_in_expectation():
  size, fraction = 50, 0.2
  q = compressors.random_k(size, fraction)
  x = jnp.asarray(np.random.default_rng(0).normal(size=size).astype(np.float32))
  keys = jax.random.split(jax.random.key(0), 400)
  errors = jax.vmap(lambda k: jnp.sum((q.decode(q.encode(x, k)) - x) ** 2))(keys)
  assert float(errors.mean()) == pytest.approx((1 - q.delta) * float(jnp.sum(x ** 2)), rel=0.06)
  payload = q.encode(x, keys[0])
  assert len(set(np.asarray(payload["index"]).tolist())) == 10  # Without replacement.


@pytest.mark.parametrize("levels", [pytest.param(1, marks=pytest.mark.slow), 4,
                                    pytest.param(16, marks=pytest.mark.slow)])
def test_qsgd_is_unbiased_up_to_its_scale_and_contracts(levels):
  size = 64
  q = compressors.qsgd(size, levels)
  omega = min(size / levels ** 2, math.sqrt(size) / levels)
  assert q.delta == pytest.approx(1 / (1 + omega))
  x = jnp.asarray(vectors(size, 1, seed=levels)[0])
  keys = jax.random.split(jax.random.key(1), 4000)
  decoded = jax.vmap(lambda k: q.decode(q.encode(x, k)))(keys)
  # E[Q(x)] = x / (1 + omega): QSGD is unbiased before the contraction scaling.
  np.testing.assert_allclose(decoded.mean(0) * (1 + omega), x, atol=0.06 * float(jnp.abs(x).max()))
  error = float(jnp.mean(jnp.sum((decoded - x) ** 2, 1)))
  assert error <= (1 - q.delta) * float(jnp.sum(x ** 2)) * 1.02
  payload = q.encode(x, keys[0])
  assert payload["level"].dtype == jnp.int8 and payload["norm"].shape == ()


def test_tree_compressor_is_per_tensor():
  tree = {"w": jnp.asarray(vectors(30, 1)[0].reshape(5, 6)), "b": jnp.asarray([3.0, -1.0, 0.5])}
  q = compressors.for_tree("top_k", jax.eval_shape(lambda: tree), fraction=0.3)
  payload = q.encode(tree, jax.random.key(0))
  assert [p["value"].shape for p in payload] == [(1,), (9,)]  # Leaves in tree order: b, w.
  out = q.decode(payload)
  np.testing.assert_array_equal(out["b"], [3.0, 0.0, 0.0])
  assert int(jnp.sum(out["w"] != 0)) == 9
  assert q.delta == pytest.approx(min(1 / 3, 9 / 30))
  with pytest.raises(ValueError, match="'top_j'"):
    compressors.build("top_j", 10)
