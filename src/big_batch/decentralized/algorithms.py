"""DProxSGT, CDProxSGT and their baselines as one step over a worker axis (Yan et al. 2023, ICML).

Every worker i holds its own x_i (and tracker y_i, last gradient g_i, compressed copies);
the state's leaves have a leading worker axis, and `step` runs inside `jax.shard_map` on the
local block of k = n / D workers, mixing through `parallel.gossip` (ppermute to the graph's
neighbours). In matrix form (columns are workers, W symmetric doubly stochastic):

  dproxsgt   Alg. 1:  Y^{t-1/2} = Y^{t-1} + G^t - G^{t-1};  Y^t = Y^{t-1/2} W;
                      X^{t+1/2} = prox_{eta r}(X^t - eta Y^t);  X^{t+1} = X^{t+1/2} W.
  cdproxsgt  Alg. 2:  the same with difference compression and error feedback:
                      Yh^t = Yh^{t-1} + Q_y[Y^{t-1/2} - Yh^{t-1}];
                      Y^t = Y^{t-1/2} + gamma_y Yh^t (W - I);
                      Xh^{t+1} = Xh^t + Q_x[X^{t+1/2} - Xh^t];
                      X^{t+1} = X^{t+1/2} + gamma_x Xh^{t+1} (W - I).
  allreduce  centralized proximal SGD: x = prox(x - eta mean_i g_i) (an all-reduce per step).
  dpsgd      local proximal SGD steps mixed with the neighbours, no tracking (D-PSGD,
             Lian et al. 2017): X^{t+1} = prox(X^t - eta G^t) W.
  choco      CHOCO-SGD (Koloskova et al. 2019, Alg. 2): dpsgd with the x-part of cdproxsgt
             (compressed x, gamma_x), no tracking.

ProxGT-SA and BEER, the paper's large-batch comparisons, are dproxsgt and cdproxsgt with a
large per-worker batch (the authors' run scripts); they need no code of their own. Each
worker keeps sum_j W_ij Xh_j (`x_hat_mix`) incrementally, adding the W-weighted decoded
compressed differences it receives, so only the compressed differences cross the network.
Y starts at 0 and G^{-1} = 0, i.e. Y^0 = G^0 after the first step (Yan et al. 2023, Alg. 1);
every worker starts from the same x^0. Then mean_i y_i = mean_i g_i after every step.
"""
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from big_batch.decentralized import compressors as compressors_lib
from big_batch.parallel import gossip as gossip_lib

ALGORITHMS = ("dproxsgt", "cdproxsgt", "allreduce", "dpsgd", "choco")
TRACKING = ("dproxsgt", "cdproxsgt")
COMPRESSED = ("cdproxsgt", "choco")


class Algorithm(NamedTuple):
  """init(params of one worker) -> state with leading worker axis [n]; step(state, batch) ->
  (state, metrics) on the local block inside shard_map (`sharded_step` wraps it);
  `bytes_sent`: bytes each worker sends per step."""
  init: Callable[[Any], dict]
  step: Callable[[dict, Any], tuple[dict, dict]]
  bytes_sent: float


def _nbytes(tree) -> int:
  return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _axpy(a, x, y):
  return jax.tree.map(lambda u, v: (a * u + v).astype(v.dtype), x, y)


def _sub(x, y):
  return jax.tree.map(jnp.subtract, x, y)


def build(name: str, *, grad_fn: Callable, prox: Callable, learning_rate: Callable,
          gossip: gossip_lib.Gossip, compressor: str = "identity",
          compressor_params: dict | None = None, gamma_x: float = 1.0, gamma_y: float = 1.0,
          clip_norm: float | None = None, abstract_params=None) -> Algorithm:
  """Algorithm `name` (ALGORITHMS).

  grad_fn(params, batch) -> ((loss, aux), grads) for one worker's params and batch rows;
  prox(tree, eta) the proximal operator of eta r (decentralized/prox.py); learning_rate(step)
  the step size eta_t; `compressor` names Q_x = Q_y (decentralized/compressors.py, per
  tensor) for cdproxsgt and choco; clip_norm clips each worker's gradient's global norm
  (the authors clip at 10). abstract_params (one worker's) sizes the compressors and the
  bytes count.
  """
  if name not in ALGORITHMS:
    raise ValueError(f"algorithm {name!r} is not one of {ALGORITHMS}")
  g = gossip
  tracking, compressed = name in TRACKING, name in COMPRESSED
  tree_q = compressors_lib.for_tree(compressor if compressed else "identity", abstract_params,
                                    **(compressor_params or {}))
  clip = optax.clip_by_global_norm(clip_norm) if clip_norm else None
  dense = _nbytes(abstract_params)
  payload = _nbytes(jax.eval_shape(tree_q.encode, abstract_params, jax.random.key(0)))
  rounds = (2 if tracking else 1) * len(g.shifts)
  bytes_sent = (2 * (g.n - 1) / g.n * dense if name == "allreduce"
                else rounds * (payload if compressed else dense))

  def init(params):
    stack = lambda tree: jax.tree.map(lambda x: jnp.broadcast_to(x, (g.n,) + x.shape), tree)
    zeros = stack(jax.tree.map(jnp.zeros_like, params))
    state = {"step": jnp.zeros((g.n,), jnp.int32), "x": stack(params),
             "key": jax.random.key_data(jax.random.split(jax.random.key(0), g.n))}
    if tracking:
      state.update(y=zeros, g_prev=zeros)
    if compressed:
      state.update(x_hat=zeros, x_hat_mix=zeros)
    if name == "cdproxsgt":
      state.update(y_hat=zeros, y_hat_mix=zeros)
    return state

  def one_gradient(params, batch):
    (loss, aux), grads = grad_fn(params, batch)
    if clip is not None:
      grads, _ = clip.update(grads, clip.init(grads))
    return grads, {"loss": loss, **aux}

  def compressed_gossip(target, copy, copy_mix, keys, gamma):
    """Q[target - copy] sent to the neighbours; returns (new, copy, copy_mix):
    new = target + gamma (sum_j W_ij copy_j - copy_i)."""
    message = jax.vmap(tree_q.encode)(_sub(target, copy), keys)
    decode = jax.vmap(tree_q.decode)
    copy = jax.tree.map(jnp.add, copy, decode(message))
    copy_mix = jax.tree.map(jnp.add, copy_mix, gossip_lib.neighbour_sum(message, decode, g))
    return _axpy(gamma, _sub(copy_mix, copy), target), copy, copy_mix

  def prox_step(x, direction, eta):
    return prox(_axpy(-eta, direction, x), eta)

  def step(state, batch):
    """One step on the local block: state leaves [k, ...], batch leaves [k, b, ...]."""
    x = state["x"]
    eta = learning_rate(state["step"][0])
    grads, aux = jax.vmap(one_gradient)(x, batch)
    keys = jax.vmap(lambda k: jax.random.split(jax.random.wrap_key_data(k), 3))(state["key"])
    new = {**state, "step": state["step"] + 1, "key": jax.random.key_data(keys[:, 0])}
    if name == "allreduce":
      mean = gossip_lib.worker_mean(grads, g)
      direction = jax.tree.map(lambda m, x: jnp.broadcast_to(m, x.shape), mean, x)
      new["x"] = prox_step(x, direction, eta)
    elif tracking:
      y_half = jax.tree.map(lambda y, gt, gp: y + gt - gp, state["y"], grads, state["g_prev"])
      if name == "dproxsgt":
        y = gossip_lib.mix(y_half, g)
      else:
        y, new["y_hat"], new["y_hat_mix"] = compressed_gossip(
            y_half, state["y_hat"], state["y_hat_mix"], keys[:, 1], gamma_y)
      x_half = prox_step(x, y, eta)
      if name == "dproxsgt":
        new["x"] = gossip_lib.mix(x_half, g)
      else:
        new["x"], new["x_hat"], new["x_hat_mix"] = compressed_gossip(
            x_half, state["x_hat"], state["x_hat_mix"], keys[:, 2], gamma_x)
      new.update(y=y, g_prev=grads)
    else:
      x_half = prox_step(x, grads, eta)
      if name == "dpsgd":
        new["x"] = gossip_lib.mix(x_half, g)
      else:
        new["x"], new["x_hat"], new["x_hat_mix"] = compressed_gossip(
            x_half, state["x_hat"], state["x_hat_mix"], keys[:, 2], gamma_x)
    return new, {**{k: _mean(v, g) for k, v in aux.items()},
                 "learning_rate": jnp.asarray(eta, jnp.float32)}

  return Algorithm(init, step, float(bytes_sent))


def _mean(v, g):
  return jax.lax.psum(v.sum(), g.axis) / g.n


def consensus_metrics(x) -> dict:
  """Consensus error sum_i ||x_i - x-bar||^2 and the share of exact zeros over all workers'
  parameters (Yan et al. 2023, Sec. 5 metrics), from the whole state's x (leaves [n, ...]).
  Outside the train step, which moves nothing but neighbour messages and scalar metrics."""
  leaves = jax.tree.leaves(x)
  error = sum(jnp.sum(jnp.square(v - v.mean(0))) for v in leaves)
  zeros = sum(jnp.sum(v == 0) for v in leaves)
  return {"consensus_error": error,
          "zeros": zeros.astype(jnp.float32) / sum(v.size for v in leaves)}


def sharded_step(step: Callable, mesh, axis: str = "worker") -> Callable:
  """`step` over the whole state: shard_map with state and batch split over mesh axis `axis`
  (leading dimensions [n] and [n, b, ...]) and the metrics replicated."""
  return jax.shard_map(step, mesh=mesh, in_specs=(P(axis), P(axis)), out_specs=(P(axis), P()))
