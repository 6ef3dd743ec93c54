"""Data: offline tfds builders, data set loading, and the global-batch pipeline."""
