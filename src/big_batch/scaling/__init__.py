"""Hyperparameter rules as pure functions of the batch size and the training run."""
