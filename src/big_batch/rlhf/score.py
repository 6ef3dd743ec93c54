"""The programmatic ground truth of the RLHF pipeline: a byte-level "prose score" of a response.

For response bytes y_1..y_L (the masked positions of a fixed-length response),

    prose(y) = F(y) · D(y) · S(y) − R(y)            (in [−1, 1])

    F = (1/L) Σ_t [y_t ∈ 'a'..'z' or y_t = ' ']                 lowercase prose bytes
    D = min(1, |{y_t}| / 12)                                     distinct bytes (no "aaaa")
    S = max(0, 1 − |(1/L) Σ_t [y_t = ' '] − 1/6| / (5/6))        about one space per 6 bytes
    R = (1/(L−1)) Σ_{t>1} [y_t = y_{t−1}]                         repeated bytes (runs)

Cheap (one pass, in JAX, so the train step scores its own samples), deterministic, and on the
help text the pretrained LM imitates it separates English sentences (≈0.6–0.8) from code,
tables, upper case and newlines (≈0–0.4). It is not trivially gamed: one repeated byte scores
≤ 0, a lowercase alphabet without spaces scores 0, text without letters 0. It can be gamed
(random lowercase "words" of five letters score as much as English): that is why it is the
ground truth the learned Bradley-Terry reward model is checked against, not the reward the
policy is trained on (`align_task.py` reports both, to catch reward hacking).
"""
import jax.numpy as jnp

DISTINCT_FOR_FULL = 12
SPACE_RATE = 1 / 6


def prose_score(tokens, mask):
  """prose(y) of the module docstring, per row: tokens int [B, L], mask {0, 1} [B, L] -> [B]."""
  mask = mask.astype(jnp.float32)
  length = jnp.maximum(mask.sum(-1), 1.0)
  lower = (tokens >= ord("a")) & (tokens <= ord("z"))
  space = tokens == ord(" ")
  fraction = ((lower | space) * mask).sum(-1) / length
  present = (jnp.arange(256) == tokens[..., None]) * mask[..., None]
  distinct = jnp.minimum(1.0, present.max(1).sum(-1) / DISTINCT_FOR_FULL)
  space_rate = (space * mask).sum(-1) / length
  spacing = jnp.maximum(0.0, 1.0 - jnp.abs(space_rate - SPACE_RATE) / (1 - SPACE_RATE))
  pair = mask[:, 1:] * mask[:, :-1]
  repeats = ((tokens[:, 1:] == tokens[:, :-1]) * pair).sum(-1) / jnp.maximum(pair.sum(-1), 1.0)
  return fraction * distinct * spacing - repeats
