"""What the offline RL configs share (configs/offline_rl/sac_n.py, edac.py, lb_sac.py)."""
import ml_collections
from ml_collections.config_dict import placeholder

ENV_IDS = {"pendulum": "Pendulum-v1", "halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5",
           "walker2d": "Walker2d-v5"}


def base_config(name: str, arg: str | None, *, num_critics: int, batch_size: int,
                eta: float = 0.0, lr_scaling: str = "none", num_steps: int,
                updates_per_step: int, edac_init: bool = False, layer_norm: bool = False,
                env: str = "pendulum",
                episodes: int = 10) -> ml_collections.ConfigDict:
  """The q_ensemble task on generated `<env>-medium` (`:quick`: `<env>-quick-random`, a few
  steps of tiny networks, for tests); the paper's defaults except the network width and the
  number of updates (module docstrings)."""
  quick = arg == "quick"
  if arg not in (None, "", "quick"):
    raise ValueError(f"configs/offline_rl/{name}.py takes no argument or 'quick', got {arg!r}")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = "q_ensemble"
  config.data = dict(name="offline_rl", variant=f"{env}-medium", transitions=True,
                     data_dir=placeholder(str), in_memory=True)
  config.rl = dict(env=ENV_IDS[env], num_critics=num_critics, hidden=64, num_layers=3,
                   layer_norm=layer_norm, edac_init=edac_init, gamma=0.99, tau=5e-3, eta=eta,
                   target_entropy=placeholder(float), initial_alpha=1.0,
                   updates_per_step=updates_per_step, ensemble_axis=placeholder(str))
  # Adam 3e-4 for actor, critics and temperature at batch 256 (CORL, LB-SAC); LB-SAC scales
  # all three by sqrt(B / 256).
  adam = dict(name="adamw", learning_rate=3e-4, weight_decay=0.0)  # Adam.
  config.optimizers = dict(actor=dict(adam), critic=dict(adam), alpha=dict(adam))
  config.batch = dict(size=batch_size, lr_scaling=lr_scaling, base_size=256)
  config.num_steps = num_steps
  config.num_epochs = placeholder(float)
  config.num_examples = placeholder(int)
  # The cadences of experiments/lb_sac.py, whose runs are these configs'.
  config.log_every = max(1, num_steps // 40)
  config.evals = dict(env=dict(kind="rollout", every=max(1, num_steps // 12), episodes=episodes,
                               seed=1000, ood_states=1000))
  config.checkpoint_every = max(1, num_steps // 4)
  config.keep_checkpoints = 2
  config.mesh = dict(data=-1, fsdp=1, seq=1)
  config.sharding = "replicated"
  config.sharding_rules = ()
  if quick:
    config.data.variant = f"{env}-quick-random"
    config.rl.hidden, config.rl.num_layers = 32, 2
    config.rl.num_critics = min(num_critics, 4)
    config.rl.updates_per_step = 4
    config.batch.size = 64 if lr_scaling == "none" else 256
    config.num_steps = 20
    config.log_every = 5
    config.evals = dict(env=dict(kind="rollout", every=20, episodes=2, seed=0, ood_states=64))
    config.checkpoint_every = 10
  return config
