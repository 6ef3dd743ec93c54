"""SAC-N (An et al. 2021): N critics, the min over the ensemble in targets and actor loss,
batch 256, Adam 3e-4 (src/big_batch/rl/offline_task.py), on generated pendulum-medium.

    python -m big_batch.main --config configs/offline_rl/sac_n.py --workdir /tmp/sac_n

N = 10, 3 x 64 ReLU layers, 240 steps of 50 updates (12,000 updates).
Measured (experiments/lb_sac.py's sac_n, seed 0; 481 s on 2 CPU cores shared with other
jobs): normalized score 60.0 at the end (seed 1: 44.3); the data's behaviour policy scores
39.5. LB-SAC (configs/offline_rl/lb_sac.py) passes 66 in about 100 s of training.

The paper's halfcheetah-medium setting (3 x 256 layers, N = 10, 3000 epochs of 1000 updates):
--config.data.variant=halfcheetah-medium --config.rl.env=HalfCheetah-v5
--config.rl.hidden=256 --config.num_steps=60000 (x 50 updates). `:quick` runs 20 steps of tiny networks
on pendulum-quick-random, for tests.
"""
from big_batch.configs.offline_rl._base import base_config


def get_config(arg: str | None = None):
  return base_config("sac_n", arg, num_critics=10, batch_size=256, num_steps=240,
                     updates_per_step=50)
