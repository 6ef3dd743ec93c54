"""big_batch.optim.lamb against optax.lamb, a numpy transcription of the paper, and invariants."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from big_batch.optim import masks, schedules
from big_batch.optim.layerwise import lamb
from optimizer_cases import (assert_matches_reference as _assert_matches_reference,
                              max_abs_diff as _max_diff, mixed_params as _params,
                              norm64 as _norm, per_step_grads as _grads, run_jitted as _run)

STEPS = 20
SCHEDULE = schedules.warmup_then("cosine", 0.1, total_steps=STEPS, warmup_steps=4, end_value=0.01)
LRS = [float(SCHEDULE(t)) for t in range(STEPS)]
MASK = masks.exclude_bias_and_norm


PARAMS = _params()
GRADS = _grads(PARAMS, STEPS)

# One compiled run per configuration, shared by the tests (compilation dominates their time).
RUNS = {
    "default": lambda: lamb(SCHEDULE),
    "optax_default": lambda: optax.lamb(SCHEDULE),
    "decay": lambda: lamb(SCHEDULE, weight_decay=0.01, weight_decay_mask=MASK),
    "optax_decay": lambda: optax.lamb(SCHEDULE, weight_decay=0.01, mask=MASK),
    "tfa": lambda: lamb(SCHEDULE, weight_decay=0.1, weight_decay_mask=MASK,
                             trust_ratio_mask=MASK),
    "nvlamb": lambda: lamb(SCHEDULE, b1=0.8, b2=0.99, eps=1e-3, weight_decay=0.01,
                                max_grad_norm=1.0, bias_correction=False),
}


@functools.cache
def _history(name):
  return _run(RUNS[name](), PARAMS, GRADS)


def _reference(params, grads, lrs, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0,
               weight_decay_mask=masks.all_params, trust_ratio_mask=masks.all_params,
               max_grad_norm=None, bias_correction=True):
  """LAMB, Algorithm 2 of You et al. 2020 (phi = identity), in float64 numpy: params per step."""
  decayed, trusted = weight_decay_mask(params), trust_ratio_mask(params)
  w = {k: np.asarray(p, np.float64) for k, p in params.items()}
  m = {k: np.zeros_like(p) for k, p in w.items()}
  v = {k: np.zeros_like(p) for k, p in w.items()}
  out = []
  for t, (grad, lr) in enumerate(zip(grads, lrs), start=1):
    g = {k: np.asarray(x, np.float64) for k, x in grad.items()}
    if max_grad_norm is not None:
      global_norm = np.sqrt(sum(_norm(x) ** 2 for x in g.values()))
      g = {k: x * min(1.0, max_grad_norm / global_norm) for k, x in g.items()}
    for k in w:
      m[k] = b1 * m[k] + (1 - b1) * g[k]
      v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
      m_hat, v_hat = m[k], v[k]
      if bias_correction:
        m_hat, v_hat = m_hat / (1 - b1 ** t), v_hat / (1 - b2 ** t)
      u = m_hat / (np.sqrt(v_hat) + eps)
      if decayed[k]:
        u = u + weight_decay * w[k]
      w_norm, u_norm = _norm(w[k]), _norm(u)
      adapt = trusted[k] and w_norm > 0 and u_norm > 0
      w[k] = w[k] - lr * (w_norm / u_norm if adapt else 1.0) * u
    out.append(dict(w))
  return out


@pytest.mark.parametrize("name", ["default", "decay"])
def test_equals_optax_lamb(name):
  (ours, our_state), (theirs, their_state) = _history(name), _history("optax_" + name)
  assert max(_max_diff(a, b) for a, b in zip(ours, theirs, strict=True)) < 1e-6
  assert jax.tree.structure(our_state) == jax.tree.structure(their_state)
  assert _max_diff(our_state, their_state) < 1e-6  # ScaleByAdamState: count, mu, nu


@pytest.mark.parametrize("name, kwargs", [
    ("decay", {"weight_decay": 0.01, "weight_decay_mask": MASK}),
    ("tfa", {"weight_decay": 0.1, "weight_decay_mask": MASK, "trust_ratio_mask": MASK}),
    ("nvlamb", {"b1": 0.8, "b2": 0.99, "eps": 1e-3, "weight_decay": 0.01, "max_grad_norm": 1.0,
                "bias_correction": False}),
])
def test_matches_paper_algorithm_in_numpy(name, kwargs):
  _assert_matches_reference(_history(name)[0], _reference(PARAMS, GRADS, LRS, **kwargs))


def test_update_norm_is_lr_times_weight_norm():
  for t, (before, update) in enumerate(_history("decay")[0]):
    for k in before:
      if _norm(before[k]) > 0:
        np.testing.assert_allclose(_norm(update[k]), LRS[t] * _norm(before[k]), rtol=1e-5,
                                   err_msg=f"{k} at step {t}")


def test_zero_weight_norm_gives_ratio_one():
  """The zero kernel is still 0 at step 2 (lr 0 at step 1): its update is -lr * Adam's direction."""
  before, update = _history("default")[0][1]
  g = [np.asarray(grad["zero_kernel"], np.float64) for grad in GRADS[:2]]
  assert _norm(before["zero_kernel"]) == 0
  m = (0.9 * 0.1 * g[0] + 0.1 * g[1]) / (1 - 0.9 ** 2)
  v = (0.999 * 0.001 * g[0] ** 2 + 0.001 * g[1] ** 2) / (1 - 0.999 ** 2)
  np.testing.assert_allclose(update["zero_kernel"], -LRS[1] * m / (np.sqrt(v) + 1e-6), rtol=1e-4)


def test_masked_leaves_get_no_decay_and_no_trust_ratio():
  """Under exclude_bias_and_norm for both masks, the bias and the scalar take plain Adam steps."""
  small = {k: PARAMS[k] for k in ("dense_bias", "scale")}
  adam, _ = _run(optax.adam(SCHEDULE, eps=1e-6), small, [{k: g[k] for k in small} for g in GRADS])
  lamb_tfa = _history("tfa")[0]
  assert max(_max_diff(a[1][k], b[1][k]) for a, b in zip(lamb_tfa, adam) for k in small) < 1e-6


def test_no_trust_ratio_is_adamw():
  """With every leaf outside the trust-ratio mask, LAMB is AdamW with its decay scaled by lr."""
  params = {k: PARAMS[k] for k in ("dense_kernel", "dense_bias")}
  grads = [{k: g[k] for k in params} for g in GRADS[:8]]
  nowhere = lambda params: jax.tree.map(lambda _: False, params)
  ours, _ = _run(lamb(SCHEDULE, weight_decay=0.01, trust_ratio_mask=nowhere), params, grads)
  adamw, _ = _run(optax.adamw(SCHEDULE, eps=1e-6, weight_decay=0.01), params, grads)
  assert max(_max_diff(a, b) for a, b in zip(ours, adamw)) < 1e-6


def test_zero_gradient_gives_no_update_and_no_nan():
  """||u|| = 0 gives ratio 1, not ||w||/0 = inf (inf * 0 would be NaN)."""
  params = {k: PARAMS[k] for k in ("dense_kernel", "zero_kernel")}
  history, _ = _run(lamb(0.1), params, [jax.tree.map(jnp.zeros_like, params)] * 2)
  for _, update in history:
    for leaf in jax.tree.leaves(update):
      assert np.all(np.asarray(leaf) == 0.0)


def test_norms_are_float32_for_float16_leaves():
  """||w||^2 = 9e6 overflows float16 (max 65504); float32 norms keep ||update|| = lr ||w||."""
  params = {"w": jnp.full((100, 100), 30.0, jnp.float16)}
  grad = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(100, 100)), jnp.float16)}
  tx = lamb(0.1, weight_decay=0.01)
  update, _ = jax.jit(tx.update)(grad, tx.init(params), params)
  assert update["w"].dtype == jnp.float16
  np.testing.assert_allclose(_norm(update["w"]), 0.1 * _norm(params["w"]), rtol=2e-3)


def test_gradient_through_the_update_is_finite_at_zero_norms():
  """d(update)/d(params) is finite at ||w|| = 0 and at ||u|| = 0 (optax.lamb: NaN at ||u|| = 0)."""
  params = {"zero_kernel": jnp.zeros((6, 5)), "dense_kernel": PARAMS["dense_kernel"]}
  grads = {"zero_kernel": GRADS[0]["zero_kernel"], "dense_kernel": jnp.zeros((8, 5))}
  tx = lamb(0.1)

  def total_update(params):
    update, _ = tx.update(grads, tx.init(params), params)
    return sum(jnp.sum(x) for x in jax.tree.leaves(update))

  for leaf in jax.tree.leaves(jax.jit(jax.grad(total_update))(params)):
    assert np.all(np.isfinite(leaf))
