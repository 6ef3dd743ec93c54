"""Single-cell counts with studies and cell types as a tfds builder (array_record), offline.

Variants: `sim_none`, `sim_weak`, `sim_medium`, `sim_strong` are the ZINB simulator
(simulate.py: 3000 cells x 200 genes, 6 cell types, 4 studies) at batch-effect strength
0, 0.5, 1 and 2; `pbmc68k` is scanpy's bundled pbmc68k_reduced as pseudo-counts in 3
synthetic studies at strength 2 (anndata_io.py). `SingleCellConfig(name=..., h5ad=path)`
reads any .h5ad with a counts layer and obs `study` / `cell_type`. Examples are
{'counts': float32 [genes], 'study': int32, 'cell_type': int32}; a seeded 80/20 split gives
'train' and 'test'.
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from big_batch.singlecell import anndata_io, simulate

TEST_FRACTION = 0.2


@dataclasses.dataclass
class SingleCellConfig(tfds.core.BuilderConfig):
  source: str = "simulate"  # 'simulate', 'pbmc68k' or 'h5ad'.
  strength: float = 1.0
  num_cells: int = 3000
  num_genes: int = 200  # Read from the file for 'h5ad'.
  h5ad: str | None = None
  seed: int = 0


def make_arrays(config: SingleCellConfig) -> dict:
  """All cells of a variant as {'counts', 'study', 'cell_type'}."""
  if config.source == "simulate":
    return simulate.simulate(config.seed, num_cells=config.num_cells, num_genes=config.num_genes,
                             strength=config.strength)
  if config.source == "pbmc68k":
    return anndata_io.pbmc68k(config.seed, strength=config.strength)
  if config.source == "h5ad":
    return anndata_io.read_h5ad(config.h5ad)
  raise ValueError(f"SingleCellConfig.source={config.source!r} is not simulate, pbmc68k or h5ad")


def split_indices(num_cells: int, seed: int) -> dict:
  """{'train', 'test'}: a seeded permutation of the cells, the last 20% held out."""
  order = np.random.default_rng(seed + 1).permutation(num_cells)
  num_test = int(round(TEST_FRACTION * num_cells))
  return {"train": np.sort(order[num_test:]), "test": np.sort(order[:num_test])}


class SingleCell(tfds.core.GeneratorBasedBuilder):
  """Single-cell RNA counts with the study (batch) and cell type of every cell."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [
      SingleCellConfig(name="sim_none", strength=0.0),
      SingleCellConfig(name="sim_weak", strength=0.5),
      SingleCellConfig(name="sim_medium", strength=1.0),
      SingleCellConfig(name="sim_strong", strength=2.0),
      SingleCellConfig(name="pbmc68k", source="pbmc68k", strength=2.0,
                       num_genes=anndata_io.PBMC68K_GENES),
  ]

  def _arrays(self):
    if not hasattr(self, "_cached"):
      self._cached = make_arrays(self.builder_config)
    return self._cached

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    num_genes = (self._arrays()["counts"].shape[1] if config.source == "h5ad"
                 else config.num_genes)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "counts": tfds.features.Tensor(shape=(num_genes,), dtype=np.float32),
            "study": tfds.features.Tensor(shape=(), dtype=np.int32),
            "cell_type": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        homepage="https://github.com/PhenomicAI/bascvi",
        disable_shuffling=True,  # Stored in cell order: row i of a split is its i-th cell.
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Generated offline: nothing to download.
    arrays = self._arrays()
    splits = split_indices(len(arrays["study"]), self.builder_config.seed)
    return {name: self._generate_examples(arrays, idx) for name, idx in splits.items()}

  def _generate_examples(self, arrays, indices):
    for i in indices:
      yield int(i), {key: value[i] for key, value in arrays.items()}
