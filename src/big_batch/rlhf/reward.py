"""The reward model: the policy's architecture with a scalar head, trained with the
Bradley-Terry loss on preference pairs labelled by the programmatic score (score.py).

Bradley-Terry (Bradley & Terry 1952; the reward-model loss of Ouyang et al. 2022, eq. 1, and
of DeepSpeed-Chat step 2, which ReMax uses): P(y_w ≻ y_l | x) = σ(r(x, y_w) − r(x, y_l)),

    L = −E log σ(r(x, y_w) − r(x, y_l)),

with r(x, y) the head's value at the response's last token (DeepSpeed-Chat's
`chosen_end_scores`). Pairs come from help-text windows (`preference_pairs`): the prompt is
the window's first bytes; the two responses are its continuation and either the same
continuation or another window's, each with a random fraction u ~ U(0, max_corruption) of
its bytes replaced by bytes drawn from the batch (so the reward model also sees garbled text,
as a sampling policy produces); the one with the higher prose score is chosen, ties dropped.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from big_batch.models import LinearAttentionLM
from big_batch.rlhf import generation
from big_batch.rlhf.score import prose_score


class RewardModel(nnx.Module):
  """LinearAttentionLM's body with a scalar head: tokens [B, N] -> values [B, N].

  The body keeps the LM's parameter tree under `lm`, so a pretrained LM's `params` warm-start
  it (`init_from.paths = {'params/lm': 'params'}`); the tied output embedding goes unused.
  """

  def __init__(self, *, rngs, **lm_kwargs):
    self.lm = LinearAttentionLM(**lm_kwargs, rngs=rngs)
    dim = self.lm.embed.features
    self.head = nnx.Linear(dim, 1, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, tokens):
    return self.head(generation.hidden_states(self.lm, tokens))[..., 0].astype(jnp.float32)


def end_values(values, end):
  """values[b, end[b]]: the value at each sequence's last token ([B, N], [B] -> [B])."""
  return jnp.take_along_axis(values, end[:, None].astype(jnp.int32), axis=1)[:, 0]


def sequence_reward(model, prompts, responses, mask):
  """r(x, y): the head at the last unmasked response token of prompt ⊕ response, [B]."""
  values = model(jnp.concatenate([prompts, responses], axis=1))
  return end_values(values, prompts.shape[1] + mask.sum(-1) - 1)


def corrupt(key, tokens, max_rate: float):
  """Each row's bytes replaced with probability u ~ U(0, max_rate) by bytes of the batch."""
  k_rate, k_where, k_what = jax.random.split(key, 3)
  rate = jax.random.uniform(k_rate, (tokens.shape[0], 1), maxval=max_rate)
  hit = jax.random.uniform(k_where, tokens.shape) < rate
  pool = tokens.reshape(-1)
  replacement = pool[jax.random.randint(k_what, tokens.shape, 0, pool.shape[0])]
  return jnp.where(hit, replacement, tokens)


def preference_pairs(key, windows, prompt_len: int, max_corruption: float):
  """{'prompts', 'chosen', 'rejected', 'chosen_mask', 'rejected_mask', 'weight'} from byte
  windows [B, N]: responses of N − prompt_len bytes, ranked by prose score (module docstring);
  weight 0 marks ties."""
  prompts, continuation = windows[:, :prompt_len], windows[:, prompt_len:]
  k_other, k_a, k_b = jax.random.split(key, 3)
  other = jnp.roll(continuation, 1, axis=0)
  use_other = jax.random.bernoulli(k_other, 0.5, (windows.shape[0], 1))
  a = corrupt(k_a, continuation, max_corruption)
  b = corrupt(k_b, jnp.where(use_other, other, continuation), max_corruption)
  mask_a, mask_b = generation.response_mask(a), generation.response_mask(b)
  score_a, score_b = prose_score(a, mask_a), prose_score(b, mask_b)
  a_wins = (score_a >= score_b)[:, None]
  return {"prompts": prompts,
          "chosen": jnp.where(a_wins, a, b), "rejected": jnp.where(a_wins, b, a),
          "chosen_mask": jnp.where(a_wins, mask_a, mask_b),
          "rejected_mask": jnp.where(a_wins, mask_b, mask_a),
          "weight": (jnp.abs(score_a - score_b) > 1e-6).astype(jnp.float32)}


def bradley_terry(model, pairs):
  """(per-pair loss −log σ(r_w − r_l), per-pair correctness [r_w > r_l]), [B] each."""
  chosen = sequence_reward(model, pairs["prompts"], pairs["chosen"], pairs["chosen_mask"])
  rejected = sequence_reward(model, pairs["prompts"], pairs["rejected"], pairs["rejected_mask"])
  margin = chosen - rejected
  return -jax.nn.log_sigmoid(margin), (margin > 0).astype(jnp.float32)
