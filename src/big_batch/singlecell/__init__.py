"""Single-cell RNA integration: BA-scVI and scVI (models, task), the KNI score, count data.

Diaz-Mejia et al. 2025, "Benchmarking and optimizing organism wide single-cell RNA alignment
methods" (arXiv 2503.20730); scVI: Lopez et al. 2018. Modules: simulate (ZINB counts with
batch effects), anndata_io (.h5ad, pbmc68k pseudo-counts), builder (the tfds data set
`singlecell`), likelihoods (NB, ZINB, KL), model (NNX modules), kni (KNI, kNN accuracy, PCA
baseline), task (the `ba_scvi` task). Nothing is imported here, so the data module can read
the builder without the task.
"""
