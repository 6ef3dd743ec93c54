"""big_batch.optim.layerwise.novograd against optax.novograd where they agree, the paper in
numpy, and the documented differences."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from big_batch.optim import masks, schedules
from big_batch.optim.layerwise import novograd
from optimizer_cases import (assert_matches_reference as _assert_matches_reference,
                              max_abs_diff as _max_diff, mixed_params as _params,
                              norm64 as _norm, per_step_grads as _grads, run_jitted as _run)

STEPS = 20
SCHEDULE = schedules.warmup_then("linear", 0.05, total_steps=STEPS, warmup_steps=4, end_value=0.005)
LRS = [float(SCHEDULE(t)) for t in range(STEPS)]
MASK = masks.exclude_bias_and_norm
OPTAX_DEFAULTS = {"b1": 0.9, "b2": 0.25, "eps": 1e-6}


PARAMS = _params()
GRADS = _grads(PARAMS, STEPS)
# The zero-initialized kernel gets no gradient for its first 3 steps (an unused embedding row).
LATE_GRADS = [{**g, "zero_kernel": jnp.zeros_like(g["zero_kernel"])} if t < 3 else g
              for t, g in enumerate(GRADS)]

# One compiled run per configuration and gradient sequence, shared by the tests (compilation
# dominates their time).
RUNS = {
    "optax_equal": lambda: novograd(SCHEDULE, weight_decay=0.01, second_moment_init="first_step",
                                    **OPTAX_DEFAULTS),
    "optax": lambda: optax.novograd(SCHEDULE, weight_decay=0.01),
    "masked": lambda: novograd(SCHEDULE, weight_decay=0.01, weight_decay_mask=MASK),
    "averaged": lambda: novograd(SCHEDULE, weight_decay=0.01, weight_decay_mask=MASK,
                                          grad_averaging=True),
    "first_step": lambda: novograd(SCHEDULE, weight_decay=0.01, weight_decay_mask=MASK,
                                   second_moment_init="first_step"),
}


@functools.cache
def _history(name, late=False):
  return _run(RUNS[name](), PARAMS, LATE_GRADS if late else GRADS)


def _reference(params, grads, lrs, b1=0.95, b2=0.98, eps=1e-8, weight_decay=0.0,
               weight_decay_mask=masks.all_params, grad_averaging=False,
               second_moment_init="first_nonzero"):
  """NovoGrad, Algorithm 1 of Ginsburg et al. 2019, in float64 numpy: params per step.

  grad_averaging multiplies the normalized gradient by (1 - b1) at every step (NeMo);
  "first_nonzero" initializes v when it is 0 (NeMo's `if exp_avg_sq == 0`), "first_step"
  at t = 1 (optax).
  """
  decayed = weight_decay_mask(params)
  w = {k: np.asarray(p, np.float64) for k, p in params.items()}
  m = {k: np.zeros_like(p) for k, p in w.items()}
  v = {k: 0.0 for k in w}
  out = []
  for t, (grad, lr) in enumerate(zip(grads, lrs), start=1):
    for k in w:
      g = np.asarray(grad[k], np.float64)
      first = v[k] == 0 if second_moment_init == "first_nonzero" else t == 1
      v[k] = _norm(g) ** 2 if first else b2 * v[k] + (1 - b2) * _norm(g) ** 2
      u = g / (np.sqrt(v[k]) + eps) + (weight_decay * w[k] if decayed[k] else 0.0)
      m[k] = b1 * m[k] + ((1 - b1) * u if grad_averaging else u)
      w[k] = w[k] - lr * m[k]
    out.append(dict(w))
  return out


def test_equals_optax_novograd_with_its_defaults():
  (ours, our_state), (theirs, their_state) = _history("optax_equal"), _history("optax")
  assert max(_max_diff(a, b) for a, b in zip(ours, theirs, strict=True)) < 1e-6
  for k in PARAMS:
    np.testing.assert_allclose(our_state[0].nu[k], their_state[0].nu[k], rtol=1e-6, err_msg=k)
  assert _max_diff(optax.tree.get(our_state, "trace"), their_state[0].mu) < 1e-6
  assert int(our_state[0].count) == int(their_state[0].count) == STEPS


def test_first_step_init_equals_optax_when_a_first_gradient_is_zero():
  (ours, our_state), (theirs, their_state) = (_history("optax_equal", late=True),
                                              _history("optax", late=True))
  assert max(_max_diff(a, b) for a, b in zip(ours, theirs, strict=True)) < 1e-6
  np.testing.assert_allclose(our_state[0].nu["zero_kernel"], their_state[0].nu["zero_kernel"],
                             rtol=1e-6)


@pytest.mark.parametrize("name, late, kwargs", [
    ("optax_equal", False, dict(weight_decay=0.01, second_moment_init="first_step",
                                **OPTAX_DEFAULTS)),
    ("masked", False, dict(weight_decay=0.01, weight_decay_mask=MASK)),
    ("averaged", False, dict(weight_decay=0.01, weight_decay_mask=MASK, grad_averaging=True)),
    ("masked", True, dict(weight_decay=0.01, weight_decay_mask=MASK)),
    ("first_step", True, dict(weight_decay=0.01, weight_decay_mask=MASK,
                              second_moment_init="first_step")),
])
def test_matches_paper_algorithm_in_numpy(name, late, kwargs):
  grads = LATE_GRADS if late else GRADS
  _assert_matches_reference(_history(name, late)[0], _reference(PARAMS, grads, LRS, **kwargs))


def test_the_inits_differ_only_for_a_leaf_whose_first_gradient_is_zero():
  """With every first gradient nonzero the two tests of "first" agree; with a late leaf they
  part at its first nonzero gradient (step 4) and nowhere else."""
  assert _max_diff(_history("masked")[0], _history("first_step")[0]) < 1e-6
  late, late_first_step = _history("masked", late=True)[0], _history("first_step", late=True)[0]
  for t, ((_, a), (_, b)) in enumerate(zip(late, late_first_step)):
    for k in PARAMS:
      diff = float(jnp.max(jnp.abs(a[k] - b[k])))
      assert diff > 1e-3 if k == "zero_kernel" and t >= 3 else diff < 1e-6, (t, k, diff)


@pytest.mark.parametrize("second_moment_init, first_step_norm", [
    ("first_nonzero", 0.1), ("first_step", 0.1 / np.sqrt(1 - 0.98))])
def test_a_leaf_whose_first_gradient_is_zero(second_moment_init, first_step_norm):
  """Step 1 has g = 0 (so m_1 = 0), step 2 a nonzero g: NeMo's init gives v_2 = ||g||^2 and
  a step of norm lr; optax's gave v_1 = 0, so v_2 = (1-b2) ||g||^2 and a step 1/sqrt(1-b2)
  times too large."""
  tx = novograd(0.1, second_moment_init=second_moment_init)
  params = {"w": jnp.zeros((4, 3))}
  grad = {"w": jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)), jnp.float32)}
  update, state = tx.update(jax.tree.map(jnp.zeros_like, grad), tx.init(params), params)
  assert float(_norm(update["w"])) == 0
  update, state = tx.update(grad, state, params)
  np.testing.assert_allclose(_norm(update["w"]), first_step_norm, rtol=1e-6)
  weight = 1 if second_moment_init == "first_nonzero" else 1 - 0.98
  np.testing.assert_allclose(state[0].nu["w"], weight * _norm(grad["w"]) ** 2, rtol=1e-6)


def test_rejects_an_unknown_second_moment_init():
  with pytest.raises(ValueError, match="second_moment_init='zero' is not one of"):
    novograd(0.1, second_moment_init="zero")


def test_defaults_are_the_reference_defaults_not_optax():
  """b1=0.95, b2=0.98, eps=1e-8 (NeMo, OpenSeq2Seq): optax's 0.9, 0.25, 1e-6 give another run."""
  masked = _history("masked")[0]
  with pytest.raises(AssertionError):
    _assert_matches_reference(masked, _reference(PARAMS, GRADS, LRS, weight_decay=0.01,
                                                 weight_decay_mask=MASK, **OPTAX_DEFAULTS))


def test_masked_leaves_get_no_weight_decay():
  """Under exclude_bias_and_norm the bias and the scalar follow the run without any decay."""
  undecayed = _reference(PARAMS, GRADS, LRS)
  for (before, update), want in zip(_history("masked")[0], undecayed):
    for k in ("dense_bias", "scale"):
      np.testing.assert_allclose(before[k] + update[k], want[k], rtol=2e-5, atol=1e-6, err_msg=k)


def test_grad_averaging_scales_the_momentum_by_one_minus_b1():
  """lr is 0 at step 1 (warmup), so both runs reach step 2 with the same params and
  m_2 = (1-b1)(b1 u_1 + u_2) with averaging, b1 u_1 + u_2 without."""
  (_, plain), (_, averaged) = _history("masked")[0][1], _history("averaged")[0][1]
  assert min(_norm(x) for x in jax.tree.leaves(plain)) > 0
  for k in PARAMS:
    np.testing.assert_allclose(averaged[k], (1 - 0.95) * plain[k], rtol=1e-5, err_msg=k)


def test_first_update_norm_is_lr_without_weight_decay():
  """Step 1: m_1 = g/(||g|| + eps), so ||dw|| = lr ||g|| / (||g|| + eps) for every leaf."""
  tx = novograd(0.1)
  grad = GRADS[0]
  update, _ = jax.jit(tx.update)(grad, tx.init(PARAMS), PARAMS)
  for k in PARAMS:
    g_norm = _norm(grad[k])
    np.testing.assert_allclose(_norm(update[k]), 0.1 * g_norm / (g_norm + 1e-8), rtol=1e-6,
                               err_msg=k)


def test_second_moment_is_one_float32_scalar_per_leaf():
  """optax keeps nu in the parameter dtype; here it is float32 and the update keeps bfloat16."""
  params = {"w": jnp.full((64, 64), 3.0, jnp.bfloat16), "b": jnp.zeros((64,), jnp.bfloat16)}
  grad = jax.tree.map(lambda p: jnp.full_like(p, 300.0), params)
  tx = novograd(0.1)
  update, state = jax.jit(tx.update)(grad, tx.init(params), params)
  nu = state[0].nu
  assert all(v.shape == () and v.dtype == jnp.float32 for v in jax.tree.leaves(nu))
  np.testing.assert_allclose(nu["w"], 64 * 64 * 300.0 ** 2, rtol=1e-6)  # above bfloat16's precision
  assert update["w"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(update["w"], np.float32), -0.1 / 64, rtol=1e-2)
