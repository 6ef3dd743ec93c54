"""Decoding the linear-attention LM with its recurrent state: sampling (temperature, top-p)
and greedy, batched over prompts, inside jit.

The model's attention (models/linear_attention_lm.py) is, per head with decay λ,

    o_i = Σ_{j≤i} λ^{i−j} (q_i·k_j) v_j = q_i S_i,     S_i = λ S_{i−1} + k_iᵀ v_i,

so a decoder keeps one d_h×d_h state S per layer and head and spends constant time per token,
never re-encoding the prefix (Katharopoulos et al. 2020, "Transformers are RNNs", eq. 16-18;
the decays of TransNormerLLM / lightning attention). `decode_step` is that recurrence on the
model's own modules; the prompt is consumed by the same step (`prefill`). The tests hold its
logits, greedy and sampled tokens against re-running the full prefix through the model.

Sampling is that of the ReMax code (HF `generate` with `do_sample=True, top_p=0.9,
temperature=1.0`): nucleus sampling (Holtzman et al. 2020), the smallest set of tokens whose
probability reaches top_p. A response is `length` tokens; it ends at the first `eos`
(kept, as the ReMax code keeps the EOS token in the action mask) and later tokens are masked.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from big_batch.models import linear_attention_lm

END_OF_DOCUMENT = 0  # the NUL byte that ends each help topic in pydoc_text


def hidden_states(lm, tokens):
  """The final-norm hidden states [B, N, dim] of `lm` (LinearAttentionLM.__call__ minus the
  output projection): the features of the reward model's and the critic's scalar heads."""
  x = lm.embed(tokens, out_sharding=linear_attention_lm._embedding_sharding(tokens))
  for block in lm.blocks:
    x = block(x)
  return lm.final_norm(x)


def init_cache(lm, batch: int):
  """Zero attention states, one [B, heads, d_h, d_h] float32 per layer."""
  states = []
  for block in lm.blocks:
    attention = block.attention
    head_dim = attention.out.in_features // attention.heads
    states.append(jnp.zeros((batch, attention.heads, head_dim, head_dim), jnp.float32))
  return states


def _attention_step(attention, x, state):
  """One token through LinearAttention: S ← λ S + kᵀv, o = q S, O = (RMSNorm_head(o) ⊙ u) W_o."""
  batch, dim = x.shape
  q, k, v, u = jnp.split(attention.qkvu(x), 4, axis=-1)
  heads = attention.heads
  split = lambda t: t.reshape(batch, heads, dim // heads).astype(jnp.float32)
  q, k, v = split(nnx.silu(q)), split(nnx.silu(k)), split(v)
  decay = jnp.asarray(attention.decays, jnp.float32)[None, :, None, None]
  state = decay * state + k[..., :, None] * v[..., None, :]
  o = jnp.einsum("bhd,bhde->bhe", q, state).astype(x.dtype)
  o = attention.norm(o).reshape(batch, dim)
  return attention.out(o * u), state


def decode_step(lm, cache, token):
  """Logits [B, vocab] of the next token after `token` [B], and the updated cache."""
  x = lm.embed(token)
  new_cache = []
  for block, state in zip(lm.blocks, cache):
    a, state = _attention_step(block.attention, block.attention_norm(x), state)
    x = x + a
    x = x + block.mlp(block.mlp_norm(x))
    new_cache.append(state)
  x = lm.final_norm(x)
  logits = lm.embed.attend(x) if lm.head is None else lm.head(x)
  return logits, new_cache


def prefill(lm, prompts):
  """(logits after the last prompt token [B, vocab], cache) from prompts [B, P], by the
  recurrence: constant memory in P."""
  def step(cache, token):
    logits, cache = decode_step(lm, cache, token)
    return cache, logits
  cache, logits = jax.lax.scan(step, init_cache(lm, prompts.shape[0]), prompts.T)
  return logits[-1], cache


def top_p_logits(logits, top_p: float):
  """Logits outside the nucleus set to −inf: keep the most probable tokens until their
  probability reaches top_p (the token that crosses it is kept; ties at the cut are kept)."""
  if top_p >= 1.0:
    return logits
  sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  before = jnp.cumsum(probs, axis=-1) - probs
  kept = before < top_p
  cutoff = jnp.min(jnp.where(kept, sorted_logits, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits >= cutoff, logits, -jnp.inf)


def next_token(key, logits, *, greedy: bool, temperature: float = 1.0, top_p: float = 1.0):
  """argmax (greedy), else a sample of softmax(logits / temperature) within the top-p nucleus."""
  if greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = top_p_logits(logits.astype(jnp.float32) / temperature, top_p)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def response_mask(tokens, eos: int | None = END_OF_DOCUMENT):
  """1 up to and including the first `eos`, 0 after it (all ones if eos is None): [B, R]."""
  if eos is None:
    return jnp.ones(tokens.shape, jnp.float32)
  ended_before = jnp.cumsum(tokens == eos, axis=-1) - (tokens == eos)
  return (ended_before == 0).astype(jnp.float32)


def generate(lm, prompts, key, length: int, *, greedy: bool, temperature: float = 1.0,
             top_p: float = 1.0, eos: int | None = END_OF_DOCUMENT):
  """(response tokens int32 [B, length], response mask [B, length]) continuing prompts [B, P].

  Token t is drawn with `jax.random.fold_in(key, t)`, so a run is a function of (key, params).
  """
  logits, cache = prefill(lm, prompts)

  def step(carry, t):
    logits, cache = carry
    token = next_token(jax.random.fold_in(key, t), logits, greedy=greedy,
                       temperature=temperature, top_p=top_p)
    logits, cache = decode_step(lm, cache, token)
    return (logits, cache), token

  _, tokens = jax.lax.scan(step, (logits, cache), jnp.arange(length))
  tokens = tokens.T
  return tokens, response_mask(tokens, eos)


def token_log_probs(logits, tokens):
  """log softmax(logits)[tokens]: logits [B, N, V], tokens [B, N] -> [B, N] float32."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]


def response_log_probs(lm, prompts, responses):
  """log π(a_t | x, a_<t) of each response token, [B, R], by one parallel forward of the model
  over prompt + response (the training-time forward of the ReMax / PPO code)."""
  sequence = jnp.concatenate([prompts, responses], axis=1)
  logits = lm(sequence[:, :-1])[:, prompts.shape[1] - 1:]
  return token_log_probs(logits, responses)
