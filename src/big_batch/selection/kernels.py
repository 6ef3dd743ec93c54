"""Base kernels for batch active learning on regression MLPs, as feature maps or Gram matrices.

Holzmüller et al., "A Framework and Benchmark for Deep Batch Active Learning for Regression",
JMLR 2023, §4 (base kernels `linear`, `nngp`, `ntk`, `ll`, `grad`, sketched `grad_rp-p`), and
Hemachandra et al., ICML 2023 (EV-GP's NTK). The infinite-width kernels are the ReLU arc-cosine
recursions of Lee et al. (2019) / Jacot et al. (2018) in the NTK parametrisation; the finite-width
ones are read from this package's Flax NNX `models.mlp.MLP` (norm='none').
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def linear_features(x) -> np.ndarray:
  """k(x, x') = xᵀx' (bmdal `linear`)."""
  return np.asarray(x, np.float64).reshape(len(x), -1)


def _relu_expectations(k11, k22, k12):
  """E[relu(u)relu(v)] and E[relu'(u)relu'(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]])."""
  norm = jnp.sqrt(k11 * k22)
  cos = jnp.clip(k12 / norm, -1.0, 1.0)
  theta = jnp.arccos(cos)
  e_relu = norm / (2 * jnp.pi) * (jnp.sin(theta) + (jnp.pi - theta) * cos)
  e_step = (jnp.pi - theta) / (2 * jnp.pi)
  return e_relu, e_step


def relu_nngp_ntk(x1, x2, *, depth: int, sigma_w: float = 1.0, sigma_b: float = 0.0):
  """Infinite-width NNGP K and NTK Θ of a ReLU MLP with `depth` linear layers (NTK param.).

  Σ¹ = σ_w² x·x'/d + σ_b²;  Σˡ⁺¹ = σ_w² E[φ(u)φ(v)] + σ_b²;
  Θ¹ = Σ¹;  Θˡ⁺¹ = Σˡ⁺¹ + σ_w² E[φ'(u)φ'(v)] Θˡ   (Jacot et al. 2018; Lee et al. 2019, eq. 4-5),
  with (u, v) ~ N(0, Σˡ restricted to {x, x'}). Returns (K, Θ), each (n1, n2).
  """
  x1 = jnp.reshape(x1, (len(x1), -1))
  x2 = jnp.reshape(x2, (len(x2), -1))
  d = x1.shape[1]
  s12 = sigma_w ** 2 * x1 @ x2.T / d + sigma_b ** 2
  s11 = sigma_w ** 2 * jnp.sum(x1 * x1, 1) / d + sigma_b ** 2
  s22 = sigma_w ** 2 * jnp.sum(x2 * x2, 1) / d + sigma_b ** 2
  theta = s12
  for _ in range(depth - 1):
    e12, step12 = _relu_expectations(s11[:, None], s22[None, :], s12)
    s12 = sigma_w ** 2 * e12 + sigma_b ** 2
    theta = s12 + sigma_w ** 2 * step12 * theta
    s11 = sigma_w ** 2 * s11 / 2 + sigma_b ** 2  # E[relu(u)²] = k/2.
    s22 = sigma_w ** 2 * s22 / 2 + sigma_b ** 2
  return s12, theta


def nngp_gram(x, *, depth, sigma_w=1.0, sigma_b=0.0) -> np.ndarray:
  """bmdal `nngp`: the infinite-width ReLU NNGP Gram matrix over the rows of x (float64)."""
  x = np.asarray(x, np.float64)
  with jax.enable_x64(True):
    return np.asarray(relu_nngp_ntk(jnp.asarray(x), jnp.asarray(x), depth=depth,
                                    sigma_w=sigma_w, sigma_b=sigma_b)[0])


def ntk_gram(x, *, depth, sigma_w=1.0, sigma_b=0.0) -> np.ndarray:
  """bmdal `ntk` / EV-GP's NTKGP kernel: the infinite-width ReLU NTK Gram matrix (float64)."""
  x = np.asarray(x, np.float64)
  with jax.enable_x64(True):
    return np.asarray(relu_nngp_ntk(jnp.asarray(x), jnp.asarray(x), depth=depth,
                                    sigma_w=sigma_w, sigma_b=sigma_b)[1])


def mlp_weights(model) -> list:
  """[(W, b), ...] of an NNX `models.mlp.MLP` with norm='none', input layer first."""
  if any(norm is not None for norm in model.norms):
    raise ValueError("gradient kernels need an MLP with norm='none' (a batch norm couples the "
                     "examples of a batch, so per-example gradients are not defined)")
  layers = [*model.layers, model.head]
  return [(layer.kernel[...], layer.bias[...]) for layer in layers]


def _forward(weights, x, shifts):
  """The MLP's output, with `shifts[l]` added to layer l's pre-activation."""
  a = x.reshape(x.shape[0], -1)
  for i, ((w, b), shift) in enumerate(zip(weights, shifts)):
    z = a @ w + b + shift
    a = jax.nn.relu(z) if i < len(weights) - 1 else z
  return a


def layer_activations_and_cotangents(model, x):
  """Per layer l: input activations a_{l-1}(x) (with a trailing 1 for the bias) and output
  cotangents δ_l(x) = ∂f(x)/∂z_l, one vjp for the scalar output (bmdal `layer_features.py`)."""
  weights = mlp_weights(model)
  if weights[-1][0].shape[1] != 1:
    raise ValueError(f"gradient kernels need a scalar-output model; this one has "
                     f"{weights[-1][0].shape[1]} outputs")
  x = jnp.asarray(x, jnp.float32).reshape(len(x), -1)
  shifts = [jnp.zeros((len(x), w.shape[1])) for w, _ in weights]
  acts = []
  a = x
  for i, (w, b) in enumerate(weights):
    acts.append(jnp.concatenate([a, jnp.ones((len(x), 1))], 1))
    z = a @ w + b
    a = jax.nn.relu(z) if i < len(weights) - 1 else z
  out, vjp = jax.vjp(lambda s: _forward(weights, x, s), shifts)
  cotangents = vjp(jnp.ones_like(out))[0]
  return [np.asarray(a, np.float64) for a in acts], [np.asarray(c, np.float64)
                                                     for c in cotangents]


def last_layer_features(model, x) -> np.ndarray:
  """bmdal `ll`: ∇ of f w.r.t. the head's weights and bias = [penultimate activations, 1]."""
  acts, _ = layer_activations_and_cotangents(model, x)
  return acts[-1]


def grad_gram(model, x) -> np.ndarray:
  """bmdal `grad`: the finite-width NTK ⟨∇_θ f(x), ∇_θ f(x')⟩ = Σ_l (a·a' + 1)(δ·δ')."""
  acts, cots = layer_activations_and_cotangents(model, x)
  return sum((a @ a.T) * (c @ c.T) for a, c in zip(acts, cots))


def sketched_grad_features(model, x, num_features: int, key) -> np.ndarray:
  """bmdal `grad_rp-p`: φ̃(x) = Σ_l √p (a_l A_l) ⊙ (δ_l B_l), A_l, B_l Gaussian N(0, 1/p).

  E⟨φ̃(x), φ̃(x')⟩ = k_grad(x, x') (a tensor sketch of each layer's product kernel; the layer sum
  is a sum of independent sketches). Holzmüller et al. 2023, §4 "sketching".
  """
  acts, cots = layer_activations_and_cotangents(model, x)
  p = num_features
  keys = jax.random.split(key, 2 * len(acts))
  phi = np.zeros((len(x), p))
  for i, (a, c) in enumerate(zip(acts, cots)):
    sa = np.asarray(jax.random.normal(keys[2 * i], (a.shape[1], p)), np.float64) / math.sqrt(p)
    sc = np.asarray(jax.random.normal(keys[2 * i + 1], (c.shape[1], p)), np.float64) / math.sqrt(p)
    phi += math.sqrt(p) * (a @ sa) * (c @ sc)
  return phi


def empirical_ntk(model, x1, x2) -> np.ndarray:
  """The empirical NTK ⟨∂f(x)/∂θ, ∂f(x')/∂θ⟩ of any scalar-output NNX model, via jax.jacrev."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def f(p, x):
    return nnx.merge(graphdef, p, rest)(x).reshape(len(x), -1)[:, 0]

  def flat_jac(x):
    jac = jax.jacrev(f)(params, jnp.asarray(x, jnp.float32))
    return jnp.concatenate([j.reshape(len(x), -1) for j in jax.tree.leaves(jac)], 1)

  j1, j2 = np.asarray(flat_jac(x1), np.float64), np.asarray(flat_jac(x2), np.float64)
  return j1 @ j2.T
