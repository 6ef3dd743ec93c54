"""Kernel transformations for batch active learning (bmdal `kernel_transforms`), in float64.

Holzmüller et al., JMLR 2023, §4: `scale` (normalise by the mean training diagonal), `train`
(the GP posterior given the labelled points), `rp`/`sketch` (a Gaussian random projection of the
feature map) and `ens` (the sum of several networks' kernels). A `KernelMatrix` holds the Gram
matrix over the rows [labelled; pool] and, when known, a feature map with φφᵀ = gram.
"""
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class KernelMatrix:
  """A kernel on the rows [labelled; pool]: gram (n, n) float64, features (n, p) or None."""
  gram: np.ndarray
  features: np.ndarray | None = None

  @classmethod
  def from_features(cls, features) -> "KernelMatrix":
    features = np.asarray(features, np.float64)
    return cls(gram=features @ features.T, features=features)


def scale(kernel: KernelMatrix, train_idx, factor: float | None = None) -> KernelMatrix:
  """bmdal `scale`: k ← k / mean_{x ∈ X_train} k(x, x), or k ← factor² k when given."""
  if factor is None:
    rows = np.asarray(train_idx) if len(train_idx) else np.arange(len(kernel.gram))
    c = 1.0 / np.mean(np.diag(kernel.gram)[rows])
  else:
    c = factor ** 2
  features = None if kernel.features is None else kernel.features * np.sqrt(c)
  return KernelMatrix(gram=kernel.gram * c, features=features)


def posterior(kernel: KernelMatrix, train_idx, sigma: float = 1e-3) -> KernelMatrix:
  """bmdal `train`: k(x,x') − k(x,X)(k(X,X) + σ²I)⁻¹k(X,x'), X the labelled rows (float64).

  Features transform as φ ← φ (I + ΦₓᵀΦₓ/σ²)^{-1/2}, which gives the same Gram matrix.
  """
  train_idx = np.asarray(train_idx, int)
  if len(train_idx) == 0:
    return kernel
  k = kernel.gram
  k_xt = k[:, train_idx]
  chol = np.linalg.cholesky(k[np.ix_(train_idx, train_idx)] + sigma ** 2 * np.eye(len(train_idx)))
  v = np.linalg.solve(chol, k_xt.T)
  gram = k - v.T @ v
  features = None
  if kernel.features is not None:
    phi_t = kernel.features[train_idx]
    evals, evecs = np.linalg.eigh(np.eye(phi_t.shape[1]) + phi_t.T @ phi_t / sigma ** 2)
    features = kernel.features @ (evecs / np.sqrt(evals)) @ evecs.T
  return KernelMatrix(gram=(gram + gram.T) / 2, features=features)


def feature_map(kernel: KernelMatrix) -> np.ndarray:
  """Features of the kernel: the stored ones, or U√Λ from the Gram matrix's eigendecomposition."""
  if kernel.features is not None:
    return kernel.features
  evals, evecs = np.linalg.eigh(kernel.gram)
  return evecs * np.sqrt(np.clip(evals, 0.0, None))


def sketch(kernel: KernelMatrix, num_features: int, rng: np.random.Generator) -> KernelMatrix:
  """bmdal `rp`: φ̃ = φ G with G_ij ~ N(0, 1/p), so E[φ̃φ̃ᵀ] = φφᵀ."""
  phi = feature_map(kernel)
  g = rng.standard_normal((phi.shape[1], num_features)) / np.sqrt(num_features)
  return KernelMatrix.from_features(phi @ g)


def ensemble(kernels) -> KernelMatrix:
  """bmdal `ens`: the sum of the kernels of independently trained networks."""
  kernels = list(kernels)
  gram = sum(k.gram for k in kernels)
  features = None
  if all(k.features is not None for k in kernels):
    features = np.concatenate([k.features for k in kernels], 1)
  return KernelMatrix(gram=gram, features=features)
