"""Mixing matrices and ppermute gossip (parallel/gossip.py) against W @ X on one device."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from big_batch.parallel import gossip


def test_ring_of_5_is_symmetric_doubly_stochastic_with_the_circulant_spectrum():
  w = gossip.ring_mixing_matrix(5)
  np.testing.assert_allclose(w, w.T)
  np.testing.assert_allclose(w.sum(0), 1.0)
  np.testing.assert_allclose(w.sum(1), 1.0)
  assert np.count_nonzero(w) == 15 and np.allclose(w[w > 0], 1 / 3)
  # Circulant: eigenvalues (1 + 2 cos(2 pi k / n)) / 3; rho is the largest |.| for k != 0.
  rho = max(abs(1 + 2 * np.cos(2 * np.pi * k / 5)) / 3 for k in range(1, 5))
  assert gossip.spectral_norm(w) == pytest.approx(rho) and rho < 1
  assert gossip.spectral_gap(w) == pytest.approx(1 - rho)
  gossip.check_mixing_matrix(w, 5)


@pytest.mark.parametrize("bad, message", [
    (np.array([[0.5, 0.5, 0], [0.2, 0.5, 0.3], [0.3, 0, 0.7]]), "not symmetric"),
    (np.eye(3), "rho"),                       # Three disconnected workers.
    (np.full((3, 3), 0.5), "row sums"),
    (np.eye(2), "shape"),
])
def test_bad_mixing_matrices_are_refused_with_the_matrix_in_the_message(bad, message):
  with pytest.raises(ValueError, match=message):
    gossip.check_mixing_matrix(bad, 3)


def mesh_of(devices):
  return jax.make_mesh((devices,), ("worker",), devices=jax.devices()[:devices])


def mixed_by_shard_map(w, x, devices):
  g = gossip.gossip(w, devices)
  mesh = mesh_of(devices)
  fn = jax.jit(jax.shard_map(lambda v: gossip.mix(v, g), mesh=mesh, in_specs=P("worker"),
                             out_specs=P("worker")))
  return fn(jax.device_put(x, NamedSharding(mesh, P("worker")))), fn, mesh


@pytest.mark.parametrize("n, devices", [(5, 5), (8, 8), (10, 5), (16, 8), (6, 1)])
def test_shard_map_mixing_equals_the_matrix_product(n, devices):
  """Rows are workers: X <- W X (W symmetric, so this is the paper's X W on columns)."""
  rng = np.random.default_rng(n)
  w = gossip.ring_mixing_matrix(n)
  if n == 16:  # A dense symmetric doubly stochastic W (Sinkhorn on a symmetric matrix).
    a = rng.uniform(size=(n, n))
    w = a + a.T
    for _ in range(500):
      w = w / w.sum(1, keepdims=True)
      w = (w + w.T) / 2
    w = gossip.check_mixing_matrix(w, n, atol=1e-5)
  x = rng.normal(size=(n, 3, 2)).astype(np.float32)
  out, _, _ = mixed_by_shard_map(w, x, devices)
  np.testing.assert_allclose(out, np.einsum("ij,jab->iab", w, x), rtol=1e-5, atol=1e-6)
  # Mixing preserves the mean over workers (1^T W = 1^T).
  np.testing.assert_allclose(np.asarray(out).mean(0), x.mean(0), rtol=1e-5, atol=1e-6)


def test_ring_hlo_has_only_neighbour_collective_permutes():
  n = 5
  x = jnp.zeros((n, 100), jnp.float32)
  _, fn, mesh = mixed_by_shard_map(gossip.ring_mixing_matrix(n), x, n)
  hlo = fn.lower(jax.device_put(x, NamedSharding(mesh, P("worker")))).compile().as_text()
  assert "all-reduce" not in hlo and "all-gather" not in hlo and "all-to-all" not in hlo
  pairs = collective_permute_pairs(hlo)
  assert len(pairs) == 2
  for perm in pairs:
    assert all((dst - src) % n in (1, n - 1) for src, dst in perm)


def collective_permute_pairs(hlo: str):
  """The source_target_pairs of every collective-permute in compiled HLO text."""
  out = []
  for line in hlo.splitlines():
    if "collective-permute(" in line or "collective-permute-start(" in line:
      found = re.search(r"source_target_pairs=\{([^}]*)\}", line)
      out.append([tuple(int(v) for v in p.split(",")) for p in
                  re.findall(r"\{(\d+,\d+)\}", "{" + found.group(1) + "}")])
  return out
