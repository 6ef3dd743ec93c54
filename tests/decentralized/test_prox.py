"""prox_l1 (decentralized/prox.py) against the closed form and the definition of the prox."""
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.decentralized import prox


def test_prox_l1_is_soft_thresholding():
  z = np.array([-3.0, -0.5, -0.2, 0.0, 0.1, 0.2, 0.7, 2.0], np.float32)
  t = 0.2
  expected = np.where(z > t, z - t, np.where(z < -t, z + t, 0.0))
  out = np.asarray(prox.prox_l1(jnp.asarray(z), t))
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  assert (out[np.abs(z) <= t] == 0).all()  # Exact zeros, not merely small.


@pytest.mark.parametrize("z", [-1.3, -0.05, 0.0, 0.4, 2.5])
def test_prox_l1_minimizes_its_objective(z):
  """argmin_x t|x| + (x - z)^2 / 2 by brute force on a fine grid."""
  t = 0.3
  grid = np.linspace(-4, 4, 800001)
  best = grid[np.argmin(t * np.abs(grid) + (grid - z) ** 2 / 2)]
  assert float(prox.prox_l1(jnp.float32(z), t)) == pytest.approx(best, abs=2e-5)


def test_prox_by_name_applies_eta_mu_to_every_leaf():
  tree = {"a": jnp.array([0.5, -0.05]), "b": jnp.array([[1.0]])}
  out = prox.build("l1", mu=0.1)(tree, 1.0)
  np.testing.assert_allclose(out["a"], [0.4, 0.0], rtol=1e-6)
  np.testing.assert_allclose(out["b"], [[0.9]], rtol=1e-6)
  assert prox.build("none")(tree, 1.0) is tree
  with pytest.raises(ValueError, match="'l2'"):
    prox.build("l2")
