"""scVI and the BA-scVI adversaries as Flax NNX modules (Lopez et al. 2018; Diaz-Mejia et al.
2025, the `BEncoder` / `BDecoder` / `BPredictor` of PhenomicAI/bascvi).

Encoder (no study input): `num_layers` blocks [Linear, LayerNorm, ReLU, Dropout], then one
block [Linear, LayerNorm, ReLU] whose output h_enc is the encoder's adversary tap;
q(z|x) = N(mu(h_enc), exp(v(h_enc)) + 1e-4). Library encoder: one block, q(l|x) = N(., .).
Decoder: h_dec = [Linear, LayerNorm, ReLU](z), the decoder's adversary tap, then `num_layers`
blocks each reading concat(h, one-hot study); rate = exp(l) softmax(.) (clamped at e^12),
dropout logits, gene-wise inverse dispersion theta = exp(px_r), px_r initialised to 0.
Adversary: Linear(H, H), LayerNorm, LeakyReLU, Linear(H, studies), LayerNorm. Weights are
Xavier-uniform, biases 0, as in the authors' code. Dropout takes an explicit key; without
one (evaluation) it is off.
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

VAR_EPS = 1e-4
TAPS = ("encoder", "decoder")
_MAX_RATE = math.exp(12.0)  # A Python float: no JAX call at import (jax.distributed).


def _linear(din, dout, rngs):
  return nnx.Linear(din, dout, kernel_init=nnx.initializers.xavier_uniform(), rngs=rngs)


def _dropout(x, rate, key):
  if key is None or rate == 0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


class Block(nnx.Module):
  """Linear -> LayerNorm -> ReLU (-> Dropout when given a key)."""

  def __init__(self, din, dout, dropout, rngs):
    self.linear = _linear(din, dout, rngs)
    self.norm = nnx.LayerNorm(dout, epsilon=1e-5, rngs=rngs)
    self.dropout = dropout

  def __call__(self, x, key=None):
    return _dropout(jax.nn.relu(self.norm(self.linear(x))), self.dropout, key)


class Gaussian(nnx.Module):
  """h -> (mean, exp(log_var) + 1e-4), the variational posterior's heads."""

  def __init__(self, din, dout, rngs):
    self.mean = _linear(din, dout, rngs)
    self.log_var = _linear(din, dout, rngs)

  def __call__(self, h):
    return self.mean(h), jnp.exp(self.log_var(h)) + VAR_EPS


class Encoder(nnx.Module):
  """log-normalised counts -> (mean, var, h_enc)."""

  def __init__(self, num_genes, hidden, latent, num_layers, dropout, rngs):
    dims = [num_genes] + [hidden] * num_layers
    self.blocks = nnx.List([Block(a, b, dropout, rngs) for a, b in zip(dims[:-1], dims[1:])])
    self.last = Block(dims[-1], hidden, 0.0, rngs)
    self.head = Gaussian(hidden, latent, rngs)

  def __call__(self, x, key=None):
    keys = [None] * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
    for block, k in zip(self.blocks, keys):
      x = block(x, k)
    h = self.last(x)
    return (*self.head(h), h)


class Decoder(nnx.Module):
  """(z, one-hot study) -> (rate fractions, dropout logits, h_dec)."""

  def __init__(self, latent, num_studies, hidden, num_genes, num_layers, rngs):
    self.first = Block(latent, hidden, 0.0, rngs)
    self.blocks = nnx.List([Block(hidden + num_studies, hidden, 0.0, rngs)
                            for _ in range(num_layers)])
    self.scale = _linear(hidden, num_genes, rngs)
    self.dropout_logit = _linear(hidden, num_genes, rngs)

  def __call__(self, z, study_onehot):
    h_dec = h = self.first(z)
    for block in self.blocks:
      h = block(jnp.concatenate([h, study_onehot], -1))
    return jax.nn.softmax(self.scale(h), -1), self.dropout_logit(h), h_dec


class ScVI(nnx.Module):
  """The VAE: encoder, library encoder, study-conditioned decoder, gene-wise dispersion."""

  def __init__(self, num_genes, num_studies, *, hidden=128, latent=10, num_layers=2,
               dropout=0.1, rngs):
    self.encoder = Encoder(num_genes, hidden, latent, num_layers, dropout, rngs)
    self.library = Encoder(num_genes, hidden, 1, 0, 0.0, rngs)
    self.decoder = Decoder(latent, num_studies, hidden, num_genes, num_layers, rngs)
    self.px_r = nnx.Param(jnp.zeros((num_genes,)))
    self.num_studies = num_studies

  def embed(self, counts):
    """The posterior mean of z, the integrated embedding (no dropout)."""
    return self.encoder(log_normalise(counts))[0]

  def __call__(self, counts, study, key=None):
    """Every quantity of the ELBO; `key` samples z, l and dropout (None: means, no dropout)."""
    x = log_normalise(counts)
    keys = (None,) * 3 if key is None else jax.random.split(key, 3)
    z_mean, z_var, h_enc = self.encoder(x, keys[0])
    l_mean, l_var, _ = self.library(x)
    if key is None:
      z, log_library = z_mean, l_mean
    else:
      z = z_mean + jnp.sqrt(z_var) * jax.random.normal(keys[1], z_mean.shape)
      log_library = l_mean + jnp.sqrt(l_var) * jax.random.normal(keys[2], l_mean.shape)
    fractions, dropout_logit, h_dec = self.decoder(
        z, jax.nn.one_hot(study, self.num_studies, dtype=z.dtype))
    rate = jnp.minimum(jnp.exp(log_library) * fractions, _MAX_RATE)
    return {"z_mean": z_mean, "z_var": z_var, "l_mean": l_mean, "l_var": l_var, "rate": rate,
            "dropout_logit": dropout_logit, "theta": jnp.exp(self.px_r[...]),
            "encoder": h_enc, "decoder": h_dec}


class Discriminator(nnx.Module):
  """h -> study logits: Linear, LayerNorm, LeakyReLU, Linear, LayerNorm (`BPredictor`)."""

  def __init__(self, hidden, num_studies, rngs):
    self.hidden = _linear(hidden, hidden, rngs)
    self.norm = nnx.LayerNorm(hidden, epsilon=1e-5, rngs=rngs)
    self.out = _linear(hidden, num_studies, rngs)
    self.out_norm = nnx.LayerNorm(num_studies, epsilon=1e-5, rngs=rngs)

  def __call__(self, h):
    return self.out_norm(self.out(jax.nn.leaky_relu(self.norm(self.hidden(h)), 0.01)))


class Adversaries(nnx.Module):
  """One study discriminator per tap in `taps` ('encoder': h_enc, 'decoder': h_dec)."""

  def __init__(self, taps, hidden, num_studies, rngs):
    self.taps = tuple(taps)
    self.heads = nnx.Dict({tap: Discriminator(hidden, num_studies, rngs) for tap in self.taps})

  def __call__(self, activations):
    return {tap: self.heads[tap](activations[tap]) for tap in self.taps}


def log_normalise(counts):
  """log(1 + 10^4 x / (sum_g x_g + 1e-6)), the encoder's input (BA-scVI's normalize_total)."""
  return jnp.log1p(1e4 * counts / (counts.sum(-1, keepdims=True) + 1e-6))
