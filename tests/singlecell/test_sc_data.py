"""The single-cell data: the simulator's batch effects, the tfds builder's round trip, .h5ad
files through the same path, and the pbmc68k pseudo-counts."""
import numpy as np
import pytest

from big_batch.singlecell import anndata_io, builder, simulate


def study_separation(data):
  """The distance between two studies' mean log-normalised profiles of one cell type, over
  the spread of that type's cells within a study."""
  x = np.log1p(1e4 * data["counts"] / data["counts"].sum(1, keepdims=True))
  t = np.bincount(data["cell_type"]).argmax()
  a, b = (x[(data["cell_type"] == t) & (data["study"] == s)] for s in (0, 1))
  return np.linalg.norm(a.mean(0) - b.mean(0)) / np.sqrt(a.var(0).sum() / len(a))


def test_simulator_shapes_counts_and_batch_effect_strength():
  runs = {s: simulate.simulate(3, num_cells=800, num_genes=60, num_studies=2, strength=s)
          for s in (0.0, 0.5, 2.0)}
  data = runs[0.5]
  assert data["counts"].shape == (800, 60) and data["counts"].dtype == np.float32
  assert np.array_equal(data["counts"], np.round(data["counts"])) and data["counts"].min() >= 0
  assert set(np.unique(data["study"])) == {0, 1} and data["cell_type"].max() < 6
  separation = [study_separation(runs[s]) for s in (0.0, 0.5, 2.0)]
  assert separation[0] < separation[1] < separation[2]
  # Strength 0: no effects at all, only composition differs between studies.
  effects = simulate.batch_effects(np.random.default_rng(0), 3, 10, 0.0)
  assert not np.any(effects["log_multiplier"]) and not np.any(effects["dropout"])


def test_injected_dropout_zeroes_the_expected_fraction():
  rng = np.random.default_rng(0)
  counts = np.full((4000, 30), 50.0)
  study = np.repeat([0, 1], 2000)
  out = simulate.inject_batch_effects(rng, counts, study, strength=2.0)
  effects = simulate.batch_effects(np.random.default_rng(0), 2, 30, 2.0)
  zeros = [(out[study == s] == 0).mean() for s in (0, 1)]
  np.testing.assert_allclose(zeros, effects["dropout"], atol=0.01)


def prepare(tmp_path, config):
  b = builder.SingleCell(config=config, data_dir=str(tmp_path), file_format="array_record")
  b.download_and_prepare()
  return b.as_data_source()


def check_round_trip(sources, arrays, seed):
  indices = builder.split_indices(len(arrays["study"]), seed)
  assert set(sources) == {"train", "test"}
  for name, idx in indices.items():
    records = sources[name].__getitems__(range(len(sources[name])))
    assert len(records) == len(idx)
    for key in ("counts", "study", "cell_type"):
      np.testing.assert_array_equal(np.stack([r[key] for r in records]), arrays[key][idx])


def test_builder_round_trip(tmp_path):
  config = builder.SingleCellConfig(name="tiny", num_cells=120, num_genes=30, strength=1.0,
                                    seed=4)
  sources = prepare(tmp_path, config)
  check_round_trip(sources, builder.make_arrays(config), 4)


def write_h5ad(path, rng):
  anndata = pytest.importorskip("anndata")
  import pandas as pd
  counts = rng.poisson(2.0, (40, 7)).astype(np.float32)
  obs = pd.DataFrame({"study": rng.choice(["lab_b", "lab_a"], 40),
                      "cell_type": rng.choice(["T", "B", "NK"], 40)},
                     index=[f"c{i}" for i in range(40)])
  adata = anndata.AnnData(X=np.log1p(counts), obs=obs, layers={"counts": counts})
  adata.write_h5ad(path)
  return counts, obs


def test_h5ad_files_load_through_the_builder(tmp_path):
  counts, obs = write_h5ad(tmp_path / "tiny.h5ad", np.random.default_rng(0))
  arrays = anndata_io.read_h5ad(str(tmp_path / "tiny.h5ad"))
  np.testing.assert_array_equal(arrays["counts"], counts)  # The counts layer, not X.
  np.testing.assert_array_equal(arrays["study"], (obs["study"] == "lab_b").astype(int))
  names = np.array(["B", "NK", "T"])
  np.testing.assert_array_equal(names[arrays["cell_type"]], obs["cell_type"])
  config = builder.SingleCellConfig(name="tiny_h5ad", source="h5ad",
                                    h5ad=str(tmp_path / "tiny.h5ad"))
  check_round_trip(prepare(tmp_path / "tfds", config), arrays, 0)


def test_h5ad_without_study_column_is_an_error(tmp_path):
  anndata = pytest.importorskip("anndata")
  import pandas as pd
  adata = anndata.AnnData(X=np.ones((3, 2), np.float32),
                          obs=pd.DataFrame({"cell_type": ["a", "b", "a"]}, index=["x", "y", "z"]))
  adata.write_h5ad(tmp_path / "bad.h5ad")
  with pytest.raises(ValueError, match=r"no column\(s\) \['study'\]"):
    anndata_io.read_h5ad(str(tmp_path / "bad.h5ad"))


@pytest.mark.filterwarnings("ignore")  # anndata on the 2017 file's layout.
def test_pbmc68k_pseudo_counts_renormalise_to_the_files_log_values():
  pytest.importorskip("anndata")
  try:
    path = anndata_io.pbmc68k_path()
  except FileNotFoundError:
    pytest.skip("scanpy (which bundles pbmc68k_reduced) is not installed")
  import anndata
  adata = anndata.read_h5ad(path)
  data = anndata_io.pbmc68k_counts(path)
  counts = data["counts"]
  assert counts.shape == (700, 765) and np.array_equal(counts, np.round(counts))
  assert data["cell_type"].max() == 9
  # Rounding aside, log1p(10^4 x / n_counts) is raw.X again.
  raw = adata.raw.X.toarray()
  back = np.log1p(1e4 * counts / adata.obs["n_counts"].to_numpy()[:, None])
  big = counts >= 20
  np.testing.assert_allclose(back[big], raw[big], atol=0.03)
  studies = anndata_io.stratified_studies(np.random.default_rng(0), data["cell_type"], 3)
  for t in range(10):
    per_study = np.bincount(studies[data["cell_type"] == t], minlength=3)
    assert per_study.max() - per_study.min() <= 1


def test_the_pbmc68k_path_on_a_file_of_its_layout_written_here(tmp_path):
  """pbmc68k_reduced's layout (raw.X = log1p(10^4 x / n_counts), obs n_counts and
  bulk_labels) written by the test, so CI covers the path without scanpy's bundled file."""
  anndata = pytest.importorskip("anndata")
  import pandas as pd
  rng = np.random.default_rng(1)
  counts = rng.poisson(3.0, (60, 9)).astype(np.float32)
  counts[:, 0] += 1  # No empty cell.
  n_counts = counts.sum(1)
  labels = rng.choice(["CD4+ T", "CD14+ Mono", "B"], 60)
  obs = pd.DataFrame({"n_counts": n_counts, "bulk_labels": pd.Categorical(labels)},
                     index=[f"c{i}" for i in range(60)])
  log_values = np.log1p(1e4 * counts / n_counts[:, None]).astype(np.float32)
  adata = anndata.AnnData(X=log_values, obs=obs)
  adata.raw = adata.copy()
  adata.write_h5ad(tmp_path / "pbmc_layout.h5ad")
  data = anndata_io.pbmc68k_counts(str(tmp_path / "pbmc_layout.h5ad"))
  np.testing.assert_array_equal(data["counts"], counts)
  names = np.array(sorted(set(labels)))
  np.testing.assert_array_equal(names[data["cell_type"]], labels)
  mixed = anndata_io.pbmc68k(0, num_studies=3, strength=2.0,
                             path=str(tmp_path / "pbmc_layout.h5ad"))
  assert mixed["counts"].shape == counts.shape and set(np.unique(mixed["study"])) == {0, 1, 2}
  assert np.array_equal(mixed["cell_type"], data["cell_type"])
  assert not np.array_equal(mixed["counts"], counts)  # Batch effects were injected.
