"""Decentralized proximal SGD with gradient tracking and compression (Yan et al. 2023, ICML):
proximal operators, compressors, the per-worker algorithms and the data partitions."""
