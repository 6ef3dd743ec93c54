"""Recurrent-state decoding of the linear-attention LM against re-running the full prefix."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from big_batch.models import LinearAttentionLM
from big_batch.rlhf import generation


@pytest.fixture(scope="module")
def lm():
  return LinearAttentionLM(vocab_size=256, dim=16, depth=2, heads=2, sequence_parallel="dense",
                           rngs=nnx.Rngs(0))


def prompts():
  return jax.random.randint(jax.random.key(1), (3, 5), 1, 256).astype(jnp.int32)


def full_prefix_decode(lm, prompts, key, length, **kwargs):
  """The reference: every token from the model re-run over the whole sequence so far (padded
  to one length, which the causal model ignores, so one compilation serves every step)."""
  n = prompts.shape[1]
  tokens = jnp.concatenate([prompts, jnp.zeros((prompts.shape[0], length), jnp.int32)], 1)
  forward = jax.jit(lambda tokens: lm(tokens))
  for t in range(length):
    logits = forward(tokens)[:, n + t - 1]
    token = generation.next_token(jax.random.fold_in(key, t), logits, **kwargs)
    tokens = tokens.at[:, n + t].set(token)
  return tokens[:, n:]


def test_prefill_logits_equal_the_parallel_forward(lm):
  x = prompts()
  full = lm(x)

  def step(cache, token):
    logits, cache = generation.decode_step(lm, cache, token)
    return cache, logits
  _, per_token = jax.lax.scan(step, generation.init_cache(lm, 3), x.T)
  np.testing.assert_allclose(per_token.transpose(1, 0, 2), full, rtol=2e-4, atol=2e-5)
  last, _ = generation.prefill(lm, x)
  np.testing.assert_allclose(last, full[:, -1], rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("kwargs", [dict(greedy=True),
                                    dict(greedy=False, temperature=0.7, top_p=0.9)])
def test_recurrent_decoding_equals_full_prefix_decoding(lm, kwargs):
  x, key = prompts(), jax.random.key(7)
  got, mask = jax.jit(lambda p: generation.generate(lm, p, key, 6, eos=None, **kwargs))(x)
  want = full_prefix_decode(lm, x, key, 6, **kwargs)
  np.testing.assert_array_equal(got, want)
  assert float(mask.min()) == 1.0
  # Log-probabilities of the response by one parallel forward equal those of the prefixes.
  lp = generation.response_log_probs(lm, x, got)
  seq = jnp.concatenate([x, got], 1)
  ref = jax.nn.log_softmax(lm(seq)[:, 4:-1])
  np.testing.assert_allclose(lp, jnp.take_along_axis(ref, got[..., None], -1)[..., 0],
                             rtol=1e-5, atol=1e-5)


def test_top_p_keeps_the_nucleus():
  logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
  kept = jnp.isfinite(generation.top_p_logits(logits, 0.7))
  np.testing.assert_array_equal(kept, [[True, True, False, False]])  # 0.5 < 0.7 ≤ 0.8
  kept = jnp.isfinite(generation.top_p_logits(logits, 0.81))
  np.testing.assert_array_equal(kept, [[True, True, True, False]])
  draws = jax.vmap(lambda k: generation.next_token(k, logits, greedy=False, top_p=0.7))(
      jax.random.split(jax.random.key(0), 4000))[:, 0]
  frequency = np.bincount(np.asarray(draws), minlength=4) / 4000
  np.testing.assert_allclose(frequency, [0.625, 0.375, 0, 0], atol=0.03)


def test_response_mask_ends_at_the_first_eos():
  tokens = jnp.asarray([[5, 0, 7, 0], [5, 6, 7, 8], [0, 1, 2, 3]])
  np.testing.assert_array_equal(generation.response_mask(tokens, 0),
                                [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])


def test_hidden_states_give_the_logits(lm):
  x = prompts()
  np.testing.assert_allclose(lm.embed.attend(generation.hidden_states(lm, x)), lm(x),
                             rtol=1e-5, atol=1e-6)
