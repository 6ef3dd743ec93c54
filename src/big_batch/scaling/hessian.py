"""Curvature of a loss at given weights: Hessian and Gauss-Newton products, Lanczos, SLQ.

The curvature of a batch of B examples is what a step at batch size B feels. Granziol, Zohren
& Roberts (JMLR 2022, "Learning rates as a function of batch size") model the batch Hessian
as the full-data Hessian plus a noise matrix whose variance shrinks like 1/B, so its extreme
eigenvalues exceed the full-data ones by a term that falls with B,

    lambda_max(H_B) ~ lambda_max(H) + c / B      (the spiked-RMT outlier lambda + P s^2/(B lambda)),

and the largest stable learning rate of SGD, 2 / lambda_max(H_B), grows linearly in B until
it saturates. This module measures it on any loss:

  hvp / gauss_newton_vp   H v by forward-over-reverse (Pearlmutter 1994), and G v = J^T H_L J v
                          for the Gauss-Newton matrix (Schraudolph 2002), on a given batch;
                          the batch and weights may be sharded: jit partitions the products
                          as it does the train step;
  lanczos                 m steps with full reorthogonalization (Gram-Schmidt twice), the
                          tridiagonal matrix returned in float64, its eigen-solve in numpy;
  top_eigenvalues         extreme Ritz values: lambda_max, lambda_min;
  spectral_density        stochastic Lanczos quadrature (SLQ; Golub & Meurant 2009,
                          Ghorbani et al. 2019): nodes and weights per random draw;
  fit_batch_sharpness     lambda_max(B) = a + c / B by least squares, with standard errors.

The basis vectors are pytrees shaped like the weights (stacked on a leading axis of m + 1),
so vectors keep the weights' sharding and no flat copy of the model is made.
"""
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Tree = object
MatVec = Callable[[Tree], Tree]


def hvp(loss_fn: Callable, params, batch, vector):
  """H v with H = d^2 loss_fn(params, batch) / d params^2: jax.jvp of jax.grad (Pearlmutter
  1994), one forward and one backward pass on `batch`."""
  return jax.jvp(lambda p: jax.grad(loss_fn)(p, batch), (params,), (vector,))[1]


def gauss_newton_vp(output_fn: Callable, loss_of_output: Callable, params, batch, vector):
  """G v = J^T H_L J v (Schraudolph 2002; Martens 2010), the Gauss-Newton matrix of
  loss_of_output(output_fn(params, batch), batch), J = d output / d params and H_L the Hessian
  of the loss in the outputs. Positive semi-definite for a loss convex in the outputs
  (softmax cross-entropy, squared error), unlike H."""
  outputs, jvp = jax.linearize(lambda p: output_fn(p, batch), params)
  hjv = jax.jvp(lambda o: jax.grad(loss_of_output)(o, batch), (outputs,), (jvp(vector),))[1]
  return jax.linear_transpose(jvp, params)(hjv)[0]


def hessian_matvec(loss_fn: Callable, params, batch) -> MatVec:
  """v -> H v of `loss_fn` at `params` on `batch`, jitted once per loss_fn."""
  return functools.partial(_jitted(hvp, loss_fn), params, batch)


def gauss_newton_matvec(output_fn: Callable, loss_of_output: Callable, params, batch) -> MatVec:
  """v -> G v, the Gauss-Newton product at `params` on `batch`, jitted once per function pair."""
  return functools.partial(_jitted(gauss_newton_vp, output_fn, loss_of_output), params, batch)


@functools.lru_cache(maxsize=32)
def _jitted(product, *functions):
  return jax.jit(functools.partial(product, *functions))


class Tridiagonal(NamedTuple):
  """The Lanczos matrix T = V^T A V: diagonal `alphas` [m], off-diagonal `betas` [m - 1]."""
  alphas: np.ndarray
  betas: np.ndarray

  def dense(self) -> np.ndarray:
    return np.diag(self.alphas) + np.diag(self.betas, 1) + np.diag(self.betas, -1)

  def eigh(self) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values (ascending) and T's eigenvectors, in float64."""
    return np.linalg.eigh(self.dense())


def _dot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _project(basis, w):
  """V^T w for the stacked basis V (rows not yet filled are zero)."""
  return sum(jnp.tensordot(v.reshape(v.shape[0], -1), x.ravel(), 1)
             for v, x in zip(jax.tree.leaves(basis), jax.tree.leaves(w)))


@jax.jit
def _lanczos_step(basis, w, i):
  """Orthogonalizes w = A v_i against the basis, twice (classical Gram-Schmidt is stable when
  repeated, Giraud et al. 2005), and stores v_{i+1}; returns (alpha_i, beta_i, basis, v_{i+1})."""
  w = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), w)
  alpha = _dot(w, jax.tree.map(lambda v: v[i], basis))
  for _ in range(2):
    coefficients = _project(basis, w)
    w = jax.tree.map(lambda x, v: x - jnp.tensordot(coefficients, v, 1), w, basis)
  beta = jnp.sqrt(_dot(w, w))
  scale = jnp.where(beta > 0, 1 / beta, 0.0)
  following = jax.tree.map(lambda x: x * scale, w)
  basis = jax.tree.map(lambda v, x: v.at[i + 1].set(x), basis, following)
  return alpha, beta, basis, following


@functools.partial(jax.jit, static_argnums=1)
def _first_basis(start, order: int):
  """The basis [m + 1, ...] holding start / |start| in row 0, and that vector."""
  start = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), start)
  norm = jnp.sqrt(_dot(start, start))
  v0 = jax.tree.map(lambda x: x / norm, start)
  basis = jax.tree.map(lambda x: jnp.zeros((order + 1, *x.shape), jnp.float32).at[0].set(x), v0)
  return basis, v0


def lanczos(matvec: MatVec, start, order: int) -> Tridiagonal:
  """`order` Lanczos steps on the symmetric operator `matvec` from the vector `start`.

  Full reorthogonalization keeps the basis orthonormal in float32, so the Ritz values carry
  no spurious copies. If the Krylov space closes early (an invariant subspace: beta ~ 0 in
  float32), T stops there and is exact for it.
  """
  if order < 1:
    raise ValueError(f"order={order!r} must be a positive integer")
  basis, v = _first_basis(start, order)
  alphas, betas = [], []
  for i in range(order):
    alpha, beta, basis, v = _lanczos_step(basis, matvec(v), i)
    alphas.append(float(alpha))  # Reading back bounds the calls queued on the devices.
    betas.append(float(beta))
    if betas[-1] <= 1e-6 * max(abs(a) for a in alphas + betas[:-1] + [1e-30]):
      break
  return Tridiagonal(np.asarray(alphas, np.float64), np.asarray(betas[:len(alphas) - 1],
                                                                  np.float64))


def random_like(tree, seed: int, kind: str = "normal"):
  """A random pytree shaped like `tree`: standard normal, or Rademacher (+-1) entries."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  if kind == "normal":
    draw = lambda k, x: jax.random.normal(k, x.shape, jnp.float32)
  elif kind == "rademacher":
    draw = lambda k, x: jax.random.rademacher(k, x.shape, jnp.float32)
  else:
    raise ValueError(f"kind={kind!r} is not 'normal' or 'rademacher'")
  return jax.tree.unflatten(treedef, [draw(k, x) for k, x in zip(keys, leaves)])


def top_eigenvalues(matvec: MatVec, like, order: int = 30, seed: int = 0) -> np.ndarray:
  """All Ritz values of `order` Lanczos steps from a random start, descending (float64).

  The first is lambda_max and the last lambda_min: the extremes converge first (Kaniel-Paige
  theory), to float precision within a few tens of steps when they are separated outliers.
  """
  return lanczos(matvec, random_like(like, seed), order).eigh()[0][::-1]


class SpectralDensity(NamedTuple):
  """SLQ: Gauss quadrature nodes and weights [draws, m] of the spectral measure
  mu = (1/n) sum_i delta(lambda_i), each draw's weights summing to 1."""
  nodes: np.ndarray
  weights: np.ndarray

  def integrate(self, fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """int fn d mu ~ (1/n) tr fn(A): the mean over draws of sum_j w_j fn(theta_j)."""
    return float(np.mean(np.sum(self.weights * fn(self.nodes), axis=1)))

  def on_grid(self, grid: np.ndarray, sigma: float) -> np.ndarray:
    """The density smoothed by a Gaussian of width `sigma` on `grid` (as Ghorbani et al. 2019
    plot it): mean over draws of sum_j w_j N(t; theta_j, sigma^2)."""
    diff = grid[:, None, None] - self.nodes[None]
    kernel = np.exp(-0.5 * (diff / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return np.mean(np.sum(self.weights[None] * kernel, axis=2), axis=1)


def spectral_density(matvec: MatVec, like, order: int = 30, draws: int = 4,
                     seed: int = 0) -> SpectralDensity:
  """Stochastic Lanczos quadrature of `matvec`'s spectrum (Golub & Meurant 2009; Ghorbani,
  Krishnan & Xiao 2019).

  For each draw, a Rademacher start v (|v| = 1) and m Lanczos steps give T = U diag(theta) U^T;
  v^T f(A) v = sum_j U_{0j}^2 f(theta_j) exactly for polynomials f of degree < 2m, and
  E_v[v^T f(A) v] = tr f(A) / n. Draws that closed early are padded with zero weights.
  """
  nodes = np.zeros((draws, order))
  weights = np.zeros((draws, order))
  for d in range(draws):
    values, vectors = lanczos(matvec, random_like(like, seed + d, "rademacher"), order).eigh()
    nodes[d, :len(values)] = values
    weights[d, :len(values)] = vectors[0] ** 2
  return SpectralDensity(nodes, weights)


class SharpnessFit(NamedTuple):
  """lambda_max(B) = full + c / B: `full` the large-batch limit, with standard errors."""
  full: float
  c: float
  full_se: float
  c_se: float

  def __call__(self, batch):
    return self.full + self.c / np.asarray(batch, np.float64)


def fit_batch_sharpness(batches, sharpness) -> SharpnessFit:
  """Least-squares fit of lambda_max(H_B) = a + c / B (Granziol et al. 2022: the outlier of
  the batch Hessian exceeds the full-data one by a term proportional to 1/B)."""
  batches, sharpness = np.asarray(batches, np.float64), np.asarray(sharpness, np.float64)
  design = np.stack([np.ones_like(batches), 1 / batches], axis=1)
  coef, _, _, _ = np.linalg.lstsq(design, sharpness, rcond=None)
  dof = max(len(batches) - 2, 1)
  residual = np.sum((sharpness - design @ coef) ** 2) / dof
  se = np.sqrt(np.diag(residual * np.linalg.inv(design.T @ design)))
  return SharpnessFit(float(coef[0]), float(coef[1]), float(se[0]), float(se[1]))
