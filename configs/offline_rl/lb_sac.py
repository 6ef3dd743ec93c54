"""LB-SAC (Nikulin et al. 2022): SAC-N with a large batch, every learning rate scaled by
sqrt(B / 256), and fewer critics, on generated pendulum-medium
(src/big_batch/rl/offline_task.py).

    python -m big_batch.main --config configs/offline_rl/lb_sac.py --workdir /tmp/lb_sac

N = 4, batch 2048 (lr 3e-4 -> 8.49e-4), 3 x 64 ReLU layers, 375 steps of 8 updates (3,000
updates). Measured (experiments/lb_sac.py's lb_n4, seed 0; 128 s on 2 shared CPU cores):
normalized score 47.3 at the end, 76.9 at its best evaluation; seed 1 ends at 82.5. SAC-N
(configs/offline_rl/sac_n.py) ends at 60.0 after 481 s. LB-SAC's own batch, 10,000
(--config.batch.size=10000 --config.rl.updates_per_step=2 --config.num_steps=600), is half
of pendulum-medium's 20,000 transitions and stayed near the random policy in 1,200 updates
(results/lb_sac/table.md).

`:quick` runs 20 steps of tiny networks at batch 256 on pendulum-quick-random, for tests.
"""
from big_batch.configs.offline_rl._base import base_config


def get_config(arg: str | None = None):
  return base_config("lb_sac", arg, num_critics=4, batch_size=2048, lr_scaling="sqrt",
                     num_steps=375, updates_per_step=8)
