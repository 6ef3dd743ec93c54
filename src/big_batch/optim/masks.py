"""Masks selecting which parameters get weight decay or layer-wise adaptation.

A mask is a pytree of bools with the structure of the params (optax convention), or a
callable params -> such a pytree. Configs name masks by string; `get(name)` resolves it.
"""
from typing import Callable

import jax


def exclude_bias_and_norm(params):
  """True for weight matrices and kernels, False for biases and norm scales/offsets (ndim <= 1).

  The convention of the LARS and LAMB papers and their references (MLPerf LARS, BERT LAMB):
  neither weight decay nor the trust ratio applies to 1-D parameters.
  """
  return jax.tree.map(lambda p: p.ndim > 1, params)


def all_params(params):
  """True for every leaf (the optax default of no mask)."""
  return jax.tree.map(lambda _: True, params)


_MASKS = {
    "exclude_bias_and_norm": exclude_bias_and_norm,
    "all": all_params,
}
NAMES = tuple(_MASKS)


def get(name: str | None) -> Callable | None:
  """The mask function called `name`; None stays None (no mask: every leaf is selected)."""
  if name is None:
    return None
  if name not in _MASKS:
    raise ValueError(f"mask={name!r} is not one of {sorted(_MASKS)}")
  return _MASKS[name]
