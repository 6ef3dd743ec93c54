"""Counts with known cell types and studies: a ZINB simulator and batch effects of set strength.

Cell type t has gene proportions p_t (a shared log-normal base with log-fold-change markers),
study b has a gene-wise multiplier m_b, a library-size shift and a dropout rate; a cell c of
type t in study b with library size L_c draws

    x_cg ~ (1 - pi_b) NB(mean L_c q_bg, theta_g) + pi_b delta_0,
    q_b = normalise(p_t * m_b),  log L_c ~ N(log L_0 + s_b, 0.3^2),

the generative story of scVI (Lopez et al. 2018, Fig. 1) with study effects in the roles the
BA-scVI paper names (Diaz-Mejia et al. 2025): gene-wise multipliers, library size, dropout.
`strength` scales all three: 0 is no batch effect (the studies differ in composition only).
`inject_batch_effects` puts the same effects on real counts (the pbmc68k-derived data).
"""
import numpy as np


def batch_effects(rng: np.random.Generator, num_studies: int, num_genes: int,
                  strength: float) -> dict:
  """Per-study effects at `strength` s: log multipliers ~ N(0, (0.5 s)^2) per gene, log library
  shifts ~ N(0, (0.5 s)^2), dropout rates ~ U(0, min(0.3 s, 0.6))."""
  return {
      "log_multiplier": rng.normal(0.0, 0.5 * strength, (num_studies, num_genes)),
      "log_library_shift": rng.normal(0.0, 0.5 * strength, num_studies),
      "dropout": rng.uniform(0.0, min(0.3 * strength, 0.6), num_studies),
  }


def inject_batch_effects(rng: np.random.Generator, counts: np.ndarray, study: np.ndarray,
                         strength: float) -> np.ndarray:
  """Real counts with study effects added: each cell's counts are scaled by its study's gene
  multipliers and library shift, redrawn as Poisson around that mean, and dropped out."""
  num_studies = int(study.max()) + 1
  effects = batch_effects(rng, num_studies, counts.shape[1], strength)
  scale = np.exp(effects["log_multiplier"][study] + effects["log_library_shift"][study, None])
  out = rng.poisson(counts * scale).astype(np.float32)
  keep = rng.random(out.shape) >= effects["dropout"][study, None]
  return out * keep


def simulate(seed: int, *, num_cells: int = 3000, num_genes: int = 200, num_cell_types: int = 6,
             num_studies: int = 4, strength: float = 1.0, library_size: float = 2000.0,
             markers_per_type: int = 15) -> dict:
  """{'counts' float32 [n, G], 'study' int32 [n], 'cell_type' int32 [n]} from the ZINB model
  of the module docstring; the studies' cell-type compositions are Dirichlet(2) draws."""
  rng = np.random.default_rng(seed)
  base = rng.normal(0.0, 1.0, num_genes)
  log_p = np.tile(base, (num_cell_types, 1))
  for t in range(num_cell_types):
    markers = rng.choice(num_genes, markers_per_type, replace=False)
    log_p[t, markers] += rng.normal(2.0, 0.5, markers_per_type)
  proportions = np.exp(log_p)
  theta = np.exp(rng.normal(1.0, 0.5, num_genes))
  effects = batch_effects(rng, num_studies, num_genes, strength)
  study = np.repeat(np.arange(num_studies), -(-num_cells // num_studies))[:num_cells]
  composition = rng.dirichlet(np.full(num_cell_types, 2.0), num_studies)
  cell_type = np.array([rng.choice(num_cell_types, p=composition[b]) for b in study])
  q = proportions[cell_type] * np.exp(effects["log_multiplier"][study])
  q /= q.sum(1, keepdims=True)
  log_library = (np.log(library_size) + effects["log_library_shift"][study]
                 + rng.normal(0.0, 0.3, num_cells))
  mean = np.exp(log_library)[:, None] * q
  # NB(mean, theta) as a Gamma-Poisson mixture: rate ~ Gamma(theta, mean / theta).
  counts = rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32)
  counts *= rng.random(counts.shape) >= effects["dropout"][study, None]
  return {"counts": counts, "study": study.astype(np.int32),
          "cell_type": cell_type.astype(np.int32)}
