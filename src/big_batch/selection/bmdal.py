"""One entry point, shaped like bmdal's `select_batch`: base kernel → transforms → method.

Holzmüller et al., JMLR 2023, §4 (`bmdal_reg/bmdal/algorithms.py::select_batch`), with EV-GP
(Hemachandra et al., ICML 2023) as the method 'ev_gp'. Rows are [labelled; pool]; the result is
positions in `pool`. bmdal's `NN_lcmd-tp_grad_rp-512` is
`select_batch([model], x_l, x_p, B, kernel='grad', transforms=[('sketch', 512)], method='lcmd')`.
"""
import jax
import numpy as np

from big_batch.selection import batch_selection, ev_gp, kernels
from big_batch.selection import kernel_transforms as kt

KERNELS = ("linear", "nngp", "ntk", "ll", "grad", "empirical_ntk")
TRANSFORMS = ("scale", "posterior", "sketch", "ens")
METHODS = {"random": batch_selection.random, "maxdiag": batch_selection.maxdiag,
           "maxdet": batch_selection.maxdet, "bait": batch_selection.bait,
           "kmeanspp": batch_selection.kmeanspp, "maxdist": batch_selection.maxdist,
           "lcmd": batch_selection.lcmd, "fw": batch_selection.frank_wolfe,
           "ev_gp": ev_gp.ev_gp}


def _parse(transform):
  name, arg = (transform, None) if isinstance(transform, str) else transform
  if name not in TRANSFORMS:
    raise ValueError(f"transform {name!r} is not one of {TRANSFORMS}")
  return name, arg


def base_kernel(model, x, kernel: str, *, sketch_features=None, key=None, depth=None,
                sigma_w=1.0, sigma_b=0.0) -> kt.KernelMatrix:
  """The base kernel over the rows of x; `sketch_features` makes 'grad' the layerwise sketch."""
  if kernel == "linear":
    return kt.KernelMatrix.from_features(kernels.linear_features(x))
  if kernel in ("nngp", "ntk"):
    depth = depth or len(model.layers) + 1
    fn = kernels.nngp_gram if kernel == "nngp" else kernels.ntk_gram
    return kt.KernelMatrix(gram=fn(x, depth=depth, sigma_w=sigma_w, sigma_b=sigma_b))
  if kernel == "ll":
    return kt.KernelMatrix.from_features(kernels.last_layer_features(model, x))
  if kernel == "grad":
    if sketch_features:
      return kt.KernelMatrix.from_features(
          kernels.sketched_grad_features(model, x, sketch_features, key))
    return kt.KernelMatrix(gram=kernels.grad_gram(model, x))
  if kernel == "empirical_ntk":
    return kt.KernelMatrix(gram=kernels.empirical_ntk(model, x, x))
  raise ValueError(f"kernel={kernel!r} is not one of {KERNELS}")


def select_batch(models, labelled, pool, batch_size: int, *, kernel="grad", transforms=(),
                 method="lcmd", key, method_args=None, kernel_args=None) -> np.ndarray:
  """Positions in `pool` of the next `batch_size` examples to label (distinct, in pick order).

  models: a list of NNX MLPs (one per ensemble member; 'ens' in `transforms` sums their
  kernels, and transforms before it apply per model); labelled, pool: input arrays. A leading
  ('sketch', p) on kernel 'grad' is the per-layer tensor sketch of bmdal's `grad_rp-p`.
  """
  if method not in METHODS:
    raise ValueError(f"method={method!r} is not one of {sorted(METHODS)}")
  if batch_size > len(pool):
    raise ValueError(f"batch_size={batch_size} exceeds the pool size {len(pool)}")
  transforms = [_parse(t) for t in transforms]
  names = [n for n, _ in transforms]
  models = list(models) if models else [None]
  if len(models) > 1 and "ens" not in names:
    raise ValueError(f"{len(models)} models need an 'ens' transform to combine their kernels")
  split = names.index("ens") if "ens" in names else len(transforms)
  x = np.concatenate([np.asarray(labelled), np.asarray(pool)])
  train_idx = np.arange(len(labelled))
  pool_idx = np.arange(len(labelled), len(x))
  keys = jax.random.split(key, len(models) + 2)
  rng = np.random.default_rng(np.asarray(jax.random.key_data(keys[-1])).ravel())

  def apply(k, ts, rng):
    for name, arg in ts:
      if name == "scale":
        k = kt.scale(k, train_idx, arg)
      elif name == "posterior":
        k = kt.posterior(k, train_idx, 1e-3 if arg is None else arg)
      elif name == "sketch":
        k = kt.sketch(k, arg or 512, rng)
    return k

  per_model = []
  for model, k_model in zip(models, keys):
    pre = transforms[:split]
    sketch_p = None
    if kernel == "grad" and pre and pre[0][0] == "sketch":
      sketch_p, pre = pre[0][1] or 512, pre[1:]
    k = base_kernel(model, x, kernel, sketch_features=sketch_p, key=k_model, **(kernel_args or {}))
    per_model.append(apply(k, pre, rng))
  k = apply(kt.ensemble(per_model), transforms[split + 1:], rng)
  picked = METHODS[method](k.gram, train_idx, pool_idx, batch_size, rng, **(method_args or {}))
  return np.asarray(picked, int) - len(labelled)
