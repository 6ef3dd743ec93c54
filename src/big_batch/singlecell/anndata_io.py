"""Counts, studies and cell types from AnnData `.h5ad` files, and the pbmc68k-derived data.

`read_h5ad(path)`: any `.h5ad` whose counts are the layer `counts` (or X) and whose obs has
`study` and `cell_type` columns. `pbmc68k(seed, ...)`: scanpy's bundled 10x_pbmc68k_reduced
(700 cells x 765 genes, 10 `bulk_labels`; log-normalised, no batches, no counts) turned into
pseudo-counts x = round(expm1(raw.X) * n_counts / 10^4) (the file was normalised to 10^4
counts per cell before its genes were subset), split into synthetic studies stratified by
cell type, with batch effects injected (simulate.inject_batch_effects). The file is found
from scanpy's install location without importing scanpy (which pulls in numba and umap).
"""
import importlib.util
import os
import warnings

import numpy as np

from big_batch.singlecell.simulate import inject_batch_effects

PBMC68K_FILE = os.path.join("datasets", "10x_pbmc68k_reduced.h5ad")
PBMC68K_GENES = 765


def _anndata():
  try:
    import anndata
  except ImportError as e:
    raise ImportError("reading .h5ad files needs anndata: "
                      "pip install 'big_batch[singlecell]'") from e
  return anndata


def _dense(x) -> np.ndarray:
  return np.asarray(x.toarray() if hasattr(x, "toarray") else x, np.float32)


def _codes(column) -> np.ndarray:
  """Integer codes of an obs column, in the order of its sorted categories."""
  values = np.asarray(column).astype(str)
  return np.unique(values, return_inverse=True)[1].astype(np.int32)


def read_h5ad(path: str, counts_layer: str = "counts") -> dict:
  """{'counts', 'study', 'cell_type'} of an .h5ad: the layer `counts_layer` (or X if absent),
  obs 'study' and 'cell_type' as integer codes (sorted category order)."""
  adata = _anndata().read_h5ad(path)
  missing = [c for c in ("study", "cell_type") if c not in adata.obs]
  if missing:
    raise ValueError(f"{path}: obs has no column(s) {missing} (it has {list(adata.obs)})")
  counts = _dense(adata.layers[counts_layer] if counts_layer in adata.layers else adata.X)
  if (counts < 0).any():
    raise ValueError(f"{path}: counts must be non-negative")
  return {"counts": counts, "study": _codes(adata.obs["study"]),
          "cell_type": _codes(adata.obs["cell_type"])}


def pbmc68k_path() -> str:
  """The path of scanpy's bundled 10x_pbmc68k_reduced.h5ad (scanpy installed, not imported)."""
  spec = importlib.util.find_spec("scanpy")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("the pbmc68k data ships with scanpy: pip install scanpy")
  path = os.path.join(list(spec.submodule_search_locations)[0], PBMC68K_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing from this scanpy install")
  return path


def pbmc68k_counts(path: str | None = None) -> dict:
  """{'counts' (pseudo-counts), 'cell_type' (bulk_labels codes)} of pbmc68k_reduced."""
  with warnings.catch_warnings():  # The 2017 file's layout: anndata warns, then reads it.
    warnings.simplefilter("ignore")
    adata = _anndata().read_h5ad(path or pbmc68k_path())
  normalised = np.expm1(_dense(adata.raw.X))
  counts = np.round(normalised * np.asarray(adata.obs["n_counts"], np.float32)[:, None] / 1e4)
  return {"counts": counts.astype(np.float32), "cell_type": _codes(adata.obs["bulk_labels"])}


def stratified_studies(rng: np.random.Generator, cell_type: np.ndarray,
                       num_studies: int) -> np.ndarray:
  """Study labels that split every cell type about evenly over `num_studies` studies."""
  study = np.empty(len(cell_type), np.int32)
  for t in np.unique(cell_type):
    cells = rng.permutation(np.flatnonzero(cell_type == t))
    study[cells] = np.arange(len(cells)) % num_studies
  return study


def pbmc68k(seed: int, num_studies: int = 3, strength: float = 2.0,
            path: str | None = None) -> dict:
  """pbmc68k_reduced as pseudo-counts in `num_studies` synthetic studies with batch effects."""
  rng = np.random.default_rng(seed)
  data = pbmc68k_counts(path)
  study = stratified_studies(rng, data["cell_type"], num_studies)
  counts = inject_batch_effects(rng, data["counts"], study, strength)
  return {"counts": counts, "study": study, "cell_type": data["cell_type"]}
