"""Gossip over a graph of workers: mixing matrices and neighbour exchange with `ppermute`.

Decentralized methods (Yan et al. 2023, ICML, Sec. 2: X <- X W) replace the all-reduce by
mixing with a symmetric doubly stochastic W whose entries are nonzero only on the graph's
edges. n workers are rows of a leading `worker` axis sharded over mesh axis `axis`, k = n / D
of them per device; worker i receives worker (i + s) mod n's row for every shift s in W's
support, through `jax.lax.ppermute` inside `jax.shard_map`: on a ring only the two neighbour
shifts exist, so the traffic is neighbour to neighbour, and of a device's block only the
rows that cross the device boundary travel.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def ring_mixing_matrix(n: int) -> np.ndarray:
  """W of the n-ring: 1/3 on each worker and its two neighbours (Yan et al. 2023, Sec. 5;
  the authors' run scripts, 5 workers). n = 1 is [[1]]; on n = 2 both neighbours coincide."""
  if not isinstance(n, int) or isinstance(n, bool) or n < 1:
    raise ValueError(f"ring_mixing_matrix(n={n!r}): n must be a positive integer")
  w = np.zeros((n, n))
  for i in range(n):
    for j in (i - 1, i, i + 1):
      w[i, j % n] += 1 / 3
  return w


def spectral_norm(w) -> float:
  """rho = ||W - 11^T / n||_2 (Yan et al. 2023, Assumption 3): the rate consensus contracts."""
  w = np.asarray(w, np.float64)
  return float(np.linalg.norm(w - np.full(w.shape, 1 / len(w)), 2))


def spectral_gap(w) -> float:
  """1 - rho, rho = ||W - 11^T / n||_2 (Yan et al. 2023, Assumption 3)."""
  return 1.0 - spectral_norm(w)


def check_mixing_matrix(w, n: int, name: str = "mixing matrix", atol: float = 1e-6) -> np.ndarray:
  """W as float64 if it is n x n, nonnegative, symmetric, doubly stochastic and rho < 1
  (a connected graph; Yan et al. 2023, Assumption 3); otherwise a ValueError naming it."""
  try:
    w = np.asarray(w, np.float64)
  except (TypeError, ValueError) as error:
    raise ValueError(f"{name}={w!r} is not a numeric matrix ({error})") from None
  if w.shape != (n, n):
    raise ValueError(f"{name} has shape {w.shape}; it must be ({n}, {n}) for {n} workers")
  problems = []
  if (w < -atol).any():
    problems.append("has negative entries")
  if not np.allclose(w, w.T, atol=atol):
    problems.append("is not symmetric")
  if not np.allclose(w.sum(axis=1), 1.0, atol=atol):
    problems.append(f"has row sums {np.round(w.sum(axis=1), 6).tolist()}, not 1")
  if not problems and spectral_norm(w) >= 1 - atol:
    problems.append(f"has rho = ||W - 11^T/n||_2 = {spectral_norm(w):.6f} >= 1 "
                    "(a disconnected graph)")
  if problems:
    raise ValueError(f"{name}={np.round(w, 6).tolist()} " + " and ".join(problems) +
                     "; it must be symmetric, doubly stochastic, with rho < 1")
  return w


class Gossip(NamedTuple):
  """W split into its diagonal and its nonzero shifts: (W X)_i = W_ii x_i + sum_s w_s[i] x_{i+s}.

  n workers over `devices` devices of mesh axis `axis` (n % devices == 0).
  """
  n: int
  devices: int
  axis: str
  diagonal: np.ndarray                         # [n]
  shifts: tuple[tuple[int, np.ndarray], ...]   # (s, [n] weights W[i, (i + s) mod n])

  @property
  def per_device(self) -> int:
    return self.n // self.devices


def gossip(w, devices: int = 1, axis: str = "worker") -> Gossip:
  """The Gossip of a checked mixing matrix `w` for n = len(w) workers on `devices` devices."""
  w = np.asarray(w, np.float64)
  n = len(w)
  if n % devices:
    raise ValueError(f"{n} workers do not split evenly over {devices} devices of mesh axis "
                     f"{axis!r}")
  rows = np.arange(n)
  shifts = tuple((s, w[rows, (rows + s) % n]) for s in range(1, n)
                 if np.any(w[rows, (rows + s) % n] != 0))
  return Gossip(n, devices, axis, np.diag(w).copy(), shifts)


def _from_device(block, offset: int, g: Gossip):
  """Inside shard_map: the block (leaves [rows, ...]) of the device `offset` steps ahead."""
  offset %= g.devices
  if offset == 0:
    return block
  perm = [((d + offset) % g.devices, d) for d in range(g.devices)]
  return jax.tree.map(lambda x: jax.lax.ppermute(x, g.axis, perm), block)


def shift(tree, s: int, g: Gossip):
  """Inside shard_map, on local blocks [k, ...]: row a of worker i = d k + a becomes worker
  (i + s) mod n's row. Only the rows another device needs cross the wire."""
  k = g.per_device
  q, r = divmod(s % g.n, k)
  head = _from_device(jax.tree.map(lambda x: x[r:], tree), q, g)
  if r == 0:
    return head
  tail = _from_device(jax.tree.map(lambda x: x[:r], tree), q + 1, g)
  return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), head, tail)


def local_weights(weights: np.ndarray, g: Gossip):
  """Inside shard_map: this device's k entries of a per-worker vector [n]."""
  k = g.per_device
  start = jax.lax.axis_index(g.axis) * k
  return jax.lax.dynamic_slice_in_dim(jnp.asarray(weights, jnp.float32), start, k)


def _scale(weights, x):
  return (weights.reshape((-1,) + (1,) * (x.ndim - 1)) * x).astype(x.dtype)


def neighbour_sum(payload, decode, g: Gossip):
  """Inside shard_map: sum_j W_ij decode(payload_j) for the local workers i.

  `payload` is what each worker sends (leaves [k, ...], e.g. top-k values and int32 indices);
  `decode` maps a payload block to dense leaves [k, ...] and runs at the receiver, so only
  the payload crosses the network. With decode the identity this is (W X)_i, the mixing
  step X <- X W of Yan et al. 2023 (W symmetric).
  """
  total = jax.tree.map(lambda x: _scale(local_weights(g.diagonal, g), x), decode(payload))
  for s, weights in g.shifts:
    received = decode(shift(payload, s, g))
    w = local_weights(weights, g)
    total = jax.tree.map(lambda t, x: t + _scale(w, x), total, received)
  return total


def mix(tree, g: Gossip):
  """Inside shard_map: (X W)_i for the local rows of every leaf (Yan et al. 2023, Eq. 4)."""
  return neighbour_sum(tree, lambda x: x, g)


def worker_mean(tree, g: Gossip):
  """Inside shard_map: the mean over all n workers, x-bar, of each leaf's rows (no worker axis)."""
  return jax.tree.map(lambda x: jax.lax.psum(x.sum(0), g.axis) / g.n, tree)
