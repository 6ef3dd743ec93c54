"""Decoder-only byte-level LM with decayed linear attention (TransNormerLLM / lightning style).

Each block is pre-norm: x ← x + Attention(RMSNorm(x)); x ← x + GLU(RMSNorm(x)).
The attention follows TransNormerLLM's gated linear attention (Qin et al. 2023,
"TransNormerLLM", arXiv:2307.14995), with the decays of lightning attention:

  Q = SiLU(X W_q), K = SiLU(X W_k), V = X W_v, U = X W_u,
  O = (RMSNorm_head(A) ⊙ U) W_o,  A_i = Σ_{j≤i} λ_h^{i−j} (q_i·k_j) v_j.

φ = SiLU is TransNormerLLM's feature map. The RMSNorm replaces the softmax denominator
(the "norm" of TransNormer); it runs over each head's channels (GroupNorm-like, one
scale of head_dim shared by the heads) rather than TransNormerLLM's SRMSNorm over all
channels, so that heads stay independent. The decays λ_h = exp(−slope_h) use ALiBi
slopes scaled per layer (`layer_decays`). The MLP is TransNormerLLM's simple GLU,
(X W_1 ⊙ X W_2) W_3, without an activation. No positional embedding: the decays carry
position. The attention runs through `big_batch.parallel.lasp` with the implementation
named by `sequence_parallel`; the sequence-parallel ones take the mesh set by
`jax.set_mesh`.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from big_batch.parallel import lasp

SEQUENCE_PARALLEL = ('lasp2', 'lasp1', 'blockwise', 'dense')


def alibi_slopes(heads):
  """ALiBi's head slopes (Press et al. 2022): s_h = 2^{−8(h+1)/H} for H a power of two.

  Otherwise the slopes of the next lower power of two P, followed by every other slope
  of 2P, as in ALiBi's reference code and lightning attention's `_build_slope_tensor`.
  """
  def power_of_two(n):
    return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]
  lower = 2 ** int(math.floor(math.log2(heads)))
  extra = power_of_two(2 * lower)[0::2][:heads - lower]
  return np.asarray(power_of_two(lower) + extra)


def layer_decays(heads, layer, layers):
  """λ_h = exp(−s_h·(1 − l/(L−1) + 1e−5)) for layer l of L: lightning attention's decays.

  The first layer decays fastest (local), the last barely (λ ≈ 1, global); this is the
  per-layer slope rate of TransNormerLLM's and MiniMax-01's lightning attention code.
  """
  depth_scale = 1 + 1e-5 - (layer / (layers - 1) if layers > 1 else 0.0)
  return np.exp(-alibi_slopes(heads) * depth_scale)


class LinearAttention(nnx.Module):
  """Gated decayed linear attention: O = (RMSNorm_head(A) ⊙ U) W_o (TransNormerLLM)."""

  def __init__(self, dim, heads, decays, *, sequence_parallel, chunk_size, rngs):
    self.heads = heads
    self.decays = tuple(float(d) for d in decays)
    self.sequence_parallel = sequence_parallel
    self.chunk_size = chunk_size
    self.qkvu = nnx.Linear(dim, 4 * dim, use_bias=False, rngs=rngs)
    self.norm = nnx.RMSNorm(dim // heads, rngs=rngs)
    self.out = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)

  def __call__(self, x):
    batch, n, dim = x.shape
    q, k, v, u = jnp.split(self.qkvu(x), 4, axis=-1)
    split_heads = lambda t: t.reshape(batch, n, self.heads, -1).transpose(0, 2, 1, 3)
    a = lasp.linear_attention(
        split_heads(nnx.silu(q)), split_heads(nnx.silu(k)), split_heads(v),
        np.asarray(self.decays), impl=self.sequence_parallel, chunk_size=self.chunk_size)
    a = self.norm(a.transpose(0, 2, 1, 3)).reshape(batch, n, dim)
    return self.out(a * u)


class GLU(nnx.Module):
  """TransNormerLLM's simple GLU: (X W_1 ⊙ X W_2) W_3."""

  def __init__(self, dim, hidden, *, rngs):
    self.gate_value = nnx.Linear(dim, 2 * hidden, use_bias=False, rngs=rngs)
    self.out = nnx.Linear(hidden, dim, use_bias=False, rngs=rngs)

  def __call__(self, x):
    gate, value = jnp.split(self.gate_value(x), 2, axis=-1)
    return self.out(gate * value)


class Block(nnx.Module):
  """Pre-norm residual block: attention then GLU."""

  def __init__(self, dim, heads, mlp_dim, decays, *, sequence_parallel, chunk_size, rngs):
    self.attention_norm = nnx.RMSNorm(dim, rngs=rngs)
    self.attention = LinearAttention(dim, heads, decays, sequence_parallel=sequence_parallel,
                                     chunk_size=chunk_size, rngs=rngs)
    self.mlp_norm = nnx.RMSNorm(dim, rngs=rngs)
    self.mlp = GLU(dim, mlp_dim, rngs=rngs)

  def __call__(self, x):
    x = x + self.attention(self.attention_norm(x))
    return x + self.mlp(self.mlp_norm(x))


class LinearAttentionLM(nnx.Module):
  """Byte-level decoder-only LM: int tokens [batch, seq] -> logits [batch, seq, vocab].

  `sequence_parallel` in {'lasp2', 'lasp1', 'blockwise', 'dense'} picks the attention
  implementation (`big_batch.parallel.lasp`); all give the same function. 'lasp1' and
  'lasp2' shard the sequence over mesh axis `seq` of the mesh set by `jax.set_mesh`,
  the batch over `data` and `fsdp` (as the trainer does), and need seq divisible by
  |seq|·chunk_size. `mlp_dim=None`
  takes 4·dim; `tie_embeddings` reuses the embedding as the output projection.
  """

  def __init__(self, *, vocab_size=256, dim=256, depth=4, heads=4, mlp_dim=None,
               tie_embeddings=True, sequence_parallel='blockwise', chunk_size=None, rngs):
    if sequence_parallel not in SEQUENCE_PARALLEL:
      raise ValueError(f'sequence_parallel={sequence_parallel!r} is not one of '
                       f'{SEQUENCE_PARALLEL}')
    if dim % heads:
      raise ValueError(f'dim={dim} is not divisible by heads={heads}')
    mlp_dim = mlp_dim or 4 * dim
    self.embed = nnx.Embed(vocab_size, dim, rngs=rngs)
    self.blocks = nnx.List([
        Block(dim, heads, mlp_dim, layer_decays(heads, layer, depth),
              sequence_parallel=sequence_parallel, chunk_size=chunk_size, rngs=rngs)
        for layer in range(depth)])
    self.sequence_parallel = sequence_parallel
    self.final_norm = nnx.RMSNorm(dim, rngs=rngs)
    self.head = None if tie_embeddings else nnx.Linear(dim, vocab_size, use_bias=False,
                                                       rngs=rngs)

  def __call__(self, tokens):
    if self.sequence_parallel in ('lasp1', 'lasp2'):
      tokens = lasp.shard_sequence(tokens)
    x = self.embed(tokens, out_sharding=_embedding_sharding(tokens))
    for block in self.blocks:
      x = block(x)
    x = self.final_norm(x)
    return self.embed.attend(x) if self.head is None else self.head(x)


def _embedding_sharding(tokens):
  """The tokens' sharding plus a replicated feature axis, or None when they are unsharded.

  Under Explicit mesh axes the output sharding of a gather with sharded indices is
  ambiguous and `jnp.take` raises, so the embedding lookup is told to follow the tokens.
  """
  spec = jax.typeof(tokens).sharding.spec
  return jax.P(*spec, None) if any(axis is not None for axis in spec) else None
