"""EDAC (An et al. 2021): SAC-N plus eta * L_ES, the ensemble gradient-diversity term at the
data's actions (eta = 1, halfcheetah-medium's value), with the reference code's
initialization (`edac_init`) and LayerNorm in the critics, on generated halfcheetah-medium
(src/big_batch/rl/offline_task.py). The term needs actions of 2 or more dimensions
(Pendulum's one is refused).

    python -m big_batch.main --config configs/offline_rl/edac.py --workdir /tmp/edac

N = 10, 3 x 64 ReLU layers, 240 steps of 50 updates (12,000 updates), batch 256, Adam 3e-4.
Measured (863 s on 2 CPU cores shared with other jobs): normalized score 1.6 (return -80.9)
at the end, q_random_std 0.406; the data's behaviour policy scores 0.7 (this machine's
halfcheetah-medium is near random: results/lb_sac/table.md). Without the critics' LayerNorm
(--config.rl.layer_norm=False) the same run stopped with a non-finite loss at step 218: the
term's gradient through g / (||g|| + 1e-10) explodes where a narrow ReLU critic's action
gradient vanishes.

`:quick` runs 20 steps of tiny networks on halfcheetah-quick-random, for tests.
"""
from big_batch.configs.offline_rl._base import base_config


def get_config(arg: str | None = None):
  return base_config("edac", arg, num_critics=10, batch_size=256, eta=1.0, edac_init=True,
                     layer_norm=True, num_steps=240, updates_per_step=50, env="halfcheetah",
                     episodes=5)
