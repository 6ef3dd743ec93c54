"""Reinforcement learning: offline Q-ensembles (SAC-N, EDAC, LB-SAC) and SVD representations
for count-based exploration.

Installed with the `rl` extra (`pip install -e '.[rl]'`: gymnasium with MuJoCo, MiniGrid).
Modules import gymnasium, MuJoCo and MiniGrid inside the functions that need them, so the
package (and the task registry) imports without the extra.
"""
