"""Proximal operators prox_{eta r}(z) = argmin_x r(x) + ||x - z||^2 / (2 eta), by name.

Yan et al. 2023 (ICML), Eq. (1): phi = f + r with r convex and possibly nonsmooth; their
experiments use r = mu ||x||_1, whose prox is soft-thresholding (the authors' `prox_Norm1`).
A prox in `PROXES` is `prox(z, eta, **params) -> x`, applied leaf-wise to a pytree.
"""
import jax
import jax.numpy as jnp


def prox_l1(z, threshold):
  """Soft-thresholding sign(z) max(|z| - threshold, 0): prox of threshold * ||.||_1
  (Yan et al. 2023, Sec. 5, r = mu ||x||_1 with threshold = eta mu)."""
  return jnp.sign(z) * jnp.maximum(jnp.abs(z) - threshold, 0).astype(z.dtype)


def l1(tree, eta, mu: float):
  """prox_{eta mu ||.||_1} over every leaf of `tree`."""
  return jax.tree.map(lambda z: prox_l1(z, jnp.asarray(eta * mu, z.dtype)), tree)


def none(tree, eta):
  """r = 0: the prox is the identity (plain SGD steps)."""
  del eta
  return tree


PROXES = {"l1": l1, "none": none}
PARAMS = {"l1": ("mu",), "none": ()}


def build(name: str, **params):
  """prox(tree, eta) for regularizer `name` with its parameters (`PARAMS[name]`)."""
  if name not in PROXES:
    raise ValueError(f"prox {name!r} is not one of {sorted(PROXES)}")
  return lambda tree, eta: PROXES[name](tree, eta, **params)
