"""Which examples to train on, or to label.

Coresets: weighted facility location (facility_location) and the CREST loop (crest); the task
that trains on them is `tasks/crest.py`, registered as 'crest'. Batch active learning for
regression: kernels (kernels), kernel transformations (kernel_transforms), selection methods
(batch_selection, ev_gp) and the bmdal-shaped entry point `select_batch` (bmdal); regression
data (regression_data; as a tfds builder, regression_builder), the training round as a task
of the trainer (regression_task, registered as 'regression') or as a fit vmapped over
initialisations (regression_fit).
"""
from big_batch.selection import batch_selection, crest, ev_gp, facility_location
from big_batch.selection import kernel_transforms, kernels, regression_data, regression_fit
from big_batch.selection.bmdal import select_batch

__all__ = ["batch_selection", "crest", "ev_gp", "facility_location", "kernel_transforms",
           "kernels", "regression_data", "regression_fit", "select_batch"]
