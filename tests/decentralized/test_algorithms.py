"""DProxSGT, CDProxSGT and the baselines under shard_map, against the matrix form in numpy.

Yan et al. 2023 (ICML), Alg. 1 and 2 written out with rows = workers (X <- W X, W
symmetric); the test problem is per-worker least squares y = a w + c with a closed-form
gradient, so the reference is independent of jax.grad, optax and the gossip code.
"""
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from big_batch.decentralized import algorithms, prox
from big_batch.parallel import gossip

D_IN, D_OUT, ROWS = 6, 4, 5
LR, MU, CLIP, FRACTION, GAMMA = 0.1, 0.02, 1.5, 0.3, 0.6


def grad_fn(params, batch):
  def loss(p):
    return jnp.mean(jnp.square(batch["a"] @ p["w"] + p["c"] - batch["t"]))
  value, grads = jax.value_and_grad(loss)(params)
  return (value, {}), grads


def initial_params():
  rng = np.random.default_rng(0)
  return {"w": rng.normal(size=(D_IN, D_OUT)).astype(np.float32),
          "c": rng.normal(size=(D_OUT,)).astype(np.float32)}


def batches(n, steps):
  rng = np.random.default_rng(1)
  shift = np.arange(n, dtype=np.float32)[:, None, None]  # Heterogeneous workers.
  return [{"a": rng.normal(size=(n, ROWS, D_IN)).astype(np.float32) + shift,
           "t": rng.normal(size=(n, ROWS, D_OUT)).astype(np.float32) - shift}
          for _ in range(steps)]


# --- The matrix-form reference -----------------------------------------------------------
def ref_grads(x, batch):
  """Closed-form gradients of mean((a w + c - t)^2) per worker, clipped at CLIP."""
  r = np.einsum("nbi,nio->nbo", batch["a"], x["w"]) + x["c"][:, None] - batch["t"]
  scale = 2 / (ROWS * D_OUT)
  g = {"w": scale * np.einsum("nbi,nbo->nio", batch["a"], r), "c": scale * r.sum(1)}
  norm = np.sqrt(sum(np.sum(v.reshape(len(v), -1) ** 2, 1) for v in g.values()))
  factor = np.minimum(1.0, CLIP / norm)
  return {k: v * factor.reshape((-1,) + (1,) * (v.ndim - 1)) for k, v in g.items()}


def ref_prox(z):
  return {k: np.sign(v) * np.maximum(np.abs(v) - LR * MU, 0) for k, v in z.items()}


def ref_top_k(d):
  """Per worker and leaf: keep the ceil(p size) largest |entries|."""
  out = {}
  for k, v in d.items():
    flat = v.reshape(len(v), -1)
    keep = math.ceil(FRACTION * flat.shape[1])
    q = np.zeros_like(flat)
    for i, row in enumerate(flat):
      top = np.argsort(-np.abs(row))[:keep]
      q[i, top] = row[top]
    out[k] = q.reshape(v.shape)
  return out


def mix(w, x):
  return {k: np.einsum("ij,j...->i...", w, v) for k, v in x.items()}


def lin(*terms):
  """sum of coefficient * tree."""
  keys = terms[0][1].keys()
  return {k: sum(c * t[k] for c, t in terms) for k in keys}


def reference(name, w, batch_list, q=ref_top_k, gamma=GAMMA):
  n = len(w)
  x = {k: np.broadcast_to(v, (n,) + v.shape).astype(np.float64)
       for k, v in initial_params().items()}
  zeros = {k: np.zeros_like(v) for k, v in x.items()}
  y, g_prev, xh, yh = zeros, zeros, zeros, zeros
  for batch in batch_list:
    g = ref_grads(x, batch)
    if name == "allreduce":
      x = ref_prox(lin((1, x), (-LR, {k: np.broadcast_to(v.mean(0), v.shape)
                                      for k, v in g.items()})))
    elif name == "dpsgd":
      x = mix(w, ref_prox(lin((1, x), (-LR, g))))
    elif name == "choco":
      x_half = ref_prox(lin((1, x), (-LR, g)))
      xh = lin((1, xh), (1, q(lin((1, x_half), (-1, xh)))))
      x = lin((1, x_half), (gamma, mix(w, xh)), (-gamma, xh))
    else:
      y_half = lin((1, y), (1, g), (-1, g_prev))
      if name == "dproxsgt":
        y = mix(w, y_half)
      else:
        yh = lin((1, yh), (1, q(lin((1, y_half), (-1, yh)))))
        y = lin((1, y_half), (gamma, mix(w, yh)), (-gamma, yh))
      x_half = ref_prox(lin((1, x), (-LR, y)))
      if name == "dproxsgt":
        x = mix(w, x_half)
      else:
        xh = lin((1, xh), (1, q(lin((1, x_half), (-1, xh)))))
        x = lin((1, x_half), (gamma, mix(w, xh)), (-gamma, xh))
      g_prev = g
  return x


# --- The shard_map implementation ----------------------------------------------------------
def run(name, n, devices, batch_list, compressor="top_k", params=None, gamma=GAMMA,
        each_step=None):
  mesh = jax.make_mesh((devices,), ("worker",), devices=jax.devices()[:devices])
  g = gossip.gossip(gossip.ring_mixing_matrix(n), devices)
  p0 = {k: jnp.asarray(v) for k, v in initial_params().items()}
  algorithm = algorithms.build(
      name, grad_fn=grad_fn, prox=prox.build("l1", mu=MU), learning_rate=lambda step: LR,
      gossip=g, compressor=compressor,
      compressor_params=params if params is not None else dict(fraction=FRACTION),
      gamma_x=gamma, gamma_y=gamma, clip_norm=CLIP, abstract_params=jax.eval_shape(lambda: p0))
  sharding = NamedSharding(mesh, P("worker"))
  step = jax.jit(algorithms.sharded_step(algorithm.step, mesh))
  state = jax.device_put(algorithm.init(p0), sharding)
  for batch in batch_list:
    state, _ = step(state, jax.device_put(batch, sharding))
    if each_step:
      each_step(jax.device_get(state))
  return jax.device_get(state), algorithm, step, state, jax.device_put(batch_list[0], sharding)


FAST = [(name, 5, 5) for name in algorithms.ALGORITHMS] + [("dproxsgt", 8, 8),
                                                             ("cdproxsgt", 10, 5)]
SLOW = [(name, n, d) for name in algorithms.ALGORITHMS for n, d in ((8, 8), (10, 5))
        if (name, n, d) not in FAST]


@pytest.mark.parametrize("name, n, devices", FAST + [
    pytest.param(*case, marks=pytest.mark.slow) for case in SLOW])
def test_shard_map_equals_the_matrix_form(name, n, devices):
  """5 workers on 5 devices, 8 on 8, and 10 on 5 (two per device, so the ring crosses
  device boundaries with one row and stays inside a device with the other)."""
  batch_list = batches(n, 4)
  state = run(name, n, devices, batch_list)[0]
  expected = reference(name, gossip.ring_mixing_matrix(n), batch_list)
  for key in expected:
    np.testing.assert_allclose(state["x"][key], expected[key], rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name, compressor, params", [
    ("dproxsgt", "identity", {}), ("cdproxsgt", "top_k", dict(fraction=0.3)),
    pytest.param("cdproxsgt", "random_k", dict(fraction=0.5), marks=pytest.mark.slow),
    pytest.param("cdproxsgt", "qsgd", dict(levels=4), marks=pytest.mark.slow)])
def test_tracking_invariant_mean_y_equals_mean_g_after_every_step(name, compressor, params):
  def invariant(state):
    for key in state["y"]:
      np.testing.assert_allclose(state["y"][key].mean(0), state["g_prev"][key].mean(0),
                                 rtol=1e-5, atol=1e-5)
  run(name, 5, 5, batches(5, 3), compressor, params, each_step=invariant)


def test_identity_compressor_with_gamma_1_is_dproxsgt():
  batch_list = batches(5, 6)
  dense = run("dproxsgt", 5, 5, batch_list)[0]
  compressed = run("cdproxsgt", 5, 5, batch_list, "identity", {}, gamma=1.0)[0]
  for key in ("x", "y"):
    for leaf in dense[key]:
      np.testing.assert_allclose(compressed[key][leaf], dense[key][leaf], rtol=1e-5, atol=1e-6)


def operand_bytes(line):
  """Bytes of the result shape of one HLO instruction line (one array, not a tuple)."""
  kind, dims = re.search(r"= (\w+)\[([\d,]*)\]", line).groups()
  size = {"f32": 4, "s32": 4, "s8": 1, "u32": 4}[kind]
  return size * math.prod(int(d) for d in dims.split(",") if d)


def permutes_and_all_reduces(step, state, batch):
  hlo = step.lower(state, batch).compile().as_text()
  lines = [l for l in hlo.splitlines() if " = " in l]
  permutes = [l for l in lines if re.search(r"collective-permute(-start)?\(", l)]
  reduces = [l for l in lines if re.search(r"all-reduce(-start)?\(", l)]
  assert not any(re.search(r"(all-gather|all-to-all|reduce-scatter)(-start)?\(", l)
                 for l in lines)
  return permutes, reduces


@pytest.mark.parametrize("name", ["dproxsgt", "cdproxsgt"])
def test_hlo_has_only_neighbour_permutes_and_the_compressed_step_moves_fewer_bytes(name):
  n = 5
  _, algorithm, step, state, batch = run(name, n, n, batches(n, 1))
  permutes, reduces = permutes_and_all_reduces(step, state, batch)
  # No all-reduce of parameters: only the scalar loss metric.
  assert reduces and all(re.search(r"= f32\[\] all-reduce", l) for l in reduces)
  for line in permutes:
    pairs = re.findall(r"\{(\d+),(\d+)\}", line.split("source_target_pairs=")[1])
    assert pairs and all((int(b) - int(a)) % n in (1, n - 1) for a, b in pairs)
  moved = sum(operand_bytes(l) for l in permutes)
  assert moved == algorithm.bytes_sent  # Per device = per worker here (k = 1).
  dense = 2 * 2 * 4 * (D_IN * D_OUT + D_OUT)  # Two rounds (y, x), two neighbours, float32.
  if name == "dproxsgt":
    assert moved == dense
  else:  # k = ceil(0.3 d) values and as many int32 indices per tensor: 2 * 0.3 of dense.
    kept = math.ceil(FRACTION * D_IN * D_OUT) + math.ceil(FRACTION * D_OUT)
    assert moved == 2 * 2 * 8 * kept
    assert moved / dense == pytest.approx(2 * FRACTION, rel=0.2)
