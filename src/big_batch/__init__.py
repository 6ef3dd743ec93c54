"""big_batch: the large-batch training literature as small, tested JAX pieces."""
