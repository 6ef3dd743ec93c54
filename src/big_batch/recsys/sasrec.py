"""SASRec (Kang & McAuley 2018) as MCLRec's code builds it, and MCLRec's model augmenters.

Encoder f_theta (QinHsiu/MCLRec `recbole/model/sequential_recommender/mclrec.py`, RecBole's
`TransformerEncoder`): E = LayerNorm(M[s] + P) with learned positions P, dropout, then
`num_blocks` post-LayerNorm Transformer blocks (BERT style: x = LN(x + Drop(Attn(x))),
x = LN(x + Drop(W2 GELU(W1 x)))) whose attention is causal and ignores keys whose item is 0
(padding, and the items the mask augmentation zeroes), with an additive -10000 as the code
has. The sequence representation h_n is the output at position length - 1. Scores over all
items are h_n M^T with the tied item embeddings M (row 0 is padding: scored, never a target;
evaluation excludes it). Weights are N(0, 0.02), biases 0, LayerNorm eps 1e-12.

Augmenter w_phi (`recbole/model/extractors.py::Extractor([64, 32, 16, 64], 'gelu')`): three
dense layers d -> d/2 -> d/4 -> d with GELU after the first two and an L2-normalised output,
initialised as torch's nn.Linear (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights and biases).

Dropout takes an explicit key (`dropout_key=None`: evaluation, no dropout), so a step's
randomness comes from the key in the task's state.
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

_INIT = nnx.initializers.normal(0.02)
_EPS = 1e-12


def _dropout(x, rate, key):
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def _dense(din, dout, rngs):
  return nnx.Linear(din, dout, kernel_init=_INIT, bias_init=nnx.initializers.zeros, rngs=rngs)


class Block(nnx.Module):
  """One post-LayerNorm Transformer block with a masked multi-head self-attention."""

  def __init__(self, hidden, heads, inner, dropout, attn_dropout, rngs):
    self.heads, self.dropout, self.attn_dropout = heads, dropout, attn_dropout
    self.query, self.key, self.value, self.out = (_dense(hidden, hidden, rngs) for _ in range(4))
    self.norm1 = nnx.LayerNorm(hidden, epsilon=_EPS, rngs=rngs)
    self.ff1, self.ff2 = _dense(hidden, inner, rngs), _dense(inner, hidden, rngs)
    self.norm2 = nnx.LayerNorm(hidden, epsilon=_EPS, rngs=rngs)

  def __call__(self, x, bias, keys):
    b, n, d = x.shape
    split = lambda t: t.reshape(b, n, self.heads, d // self.heads).transpose(0, 2, 1, 3)
    q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // self.heads) + bias
    probs = _dropout(jax.nn.softmax(scores, -1), self.attn_dropout, keys[0])
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
    x = self.norm1(x + _dropout(self.out(context), self.dropout, keys[1]))
    hidden = self.ff2(jax.nn.gelu(self.ff1(x), approximate=False))
    return self.norm2(x + _dropout(hidden, self.dropout, keys[2]))


class SASRec(nnx.Module):
  """f_theta: item sequences [B, N] (0 = padding) and lengths [B] -> h_n [B, hidden]."""

  def __init__(self, num_items: int, max_len: int, *, hidden: int = 64, blocks: int = 2,
               heads: int = 2, inner: int = 256, dropout: float = 0.5,
               attn_dropout: float = 0.5, rngs: nnx.Rngs):
    if hidden % heads:
      raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
    self.dropout = dropout
    self.item_embedding = nnx.Embed(num_items, hidden, embedding_init=_INIT, rngs=rngs)
    self.position_embedding = nnx.Embed(max_len, hidden, embedding_init=_INIT, rngs=rngs)
    self.norm = nnx.LayerNorm(hidden, epsilon=_EPS, rngs=rngs)
    self.blocks = nnx.List([Block(hidden, heads, inner, dropout, attn_dropout, rngs)
                            for _ in range(blocks)])

  def __call__(self, items, lengths, dropout_key=None):
    n = items.shape[1]
    keys = ([None] * (1 + 3 * len(self.blocks)) if dropout_key is None
            else list(jax.random.split(dropout_key, 1 + 3 * len(self.blocks))))
    x = self.item_embedding(items) + self.position_embedding(jnp.arange(n))[None]
    x = _dropout(self.norm(x), self.dropout, keys[0])
    visible = (items > 0)[:, None, None, :] & jnp.tril(jnp.ones((n, n), bool))[None, None]
    bias = jnp.where(visible, 0.0, -10000.0)
    for i, block in enumerate(self.blocks):
      x = block(x, bias, keys[1 + 3 * i: 4 + 3 * i])
    return jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)[:, 0]

  def scores(self, h):
    """h M^T: a score for every item id, padding 0 included, [B, num_items]."""
    return h @ self.item_embedding.embedding[...].T


def _torch_uniform(fan_in):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                  bound)


class Augmenter(nnx.Module):
  """w_phi: d -> d/2 -> d/4 -> d, GELU, GELU, then x / ||x||_2 (MCLRec's Extractor)."""

  def __init__(self, hidden: int, *, rngs: nnx.Rngs):
    sizes = (hidden, hidden // 2, hidden // 4, hidden)
    self.layers = nnx.List([
        nnx.Linear(a, b, kernel_init=_torch_uniform(a), bias_init=_torch_uniform(a), rngs=rngs)
        for a, b in zip(sizes[:-1], sizes[1:])])

  def __call__(self, h):
    for i, layer in enumerate(self.layers):
      h = layer(h)
      if i < len(self.layers) - 1:
        h = jax.nn.gelu(h, approximate=False)
    return h / jnp.linalg.norm(h, axis=-1, keepdims=True)
