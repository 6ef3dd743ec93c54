"""Optimizers as optax GradientTransformations, built by name from `config.optimizer`.

`config.optimizer` holds `name`, the schedule fields (`learning_rate`, `schedule`,
`warmup_steps`, `end_value`, `power`), an optional `grad_clip_norm` (clip by global norm
before the optimizer), and every other field as a keyword argument of the optimizer.
Fields ending in `_mask` name a mask of `big_batch.optim.masks`.
"""
import optax

from big_batch.optim import baselines, lamb, lars, masks, novograd, schedules

OPTIMIZERS = {
    "sgd": baselines.sgd,
    "adamw": baselines.adamw,
    "lamb": lamb.lamb,
    "lars": lars.lars,
    "novograd": novograd.novograd,
}

_SCHEDULE_FIELDS = ("name", "learning_rate", "schedule", "warmup_steps", "end_value", "power",
                    "grad_clip_norm")


def build(config, total_steps: int) -> optax.GradientTransformation:
  """The optimizer named by `config.name` with `config`'s schedule over `total_steps`."""
  if config.name not in OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={config.name!r} is not one of {sorted(OPTIMIZERS)}")
  kwargs = {k: v for k, v in config.items() if k not in _SCHEDULE_FIELDS}
  for key, value in kwargs.items():
    if key.endswith("_mask") and (value is None or isinstance(value, str)):
      kwargs[key] = masks.get(value)
  tx = OPTIMIZERS[config.name](learning_rate=schedules.from_config(config, total_steps), **kwargs)
  if config.get("grad_clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx
