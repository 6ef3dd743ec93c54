"""big_batch.optim.lars against optax.lars, numpy transcriptions of both ratios, and invariants."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from big_batch.optim import masks, schedules
from big_batch.optim.layerwise import LARS_RATIOS, lars
from optimizer_cases import (assert_matches_reference as _assert_matches_reference,
                              max_abs_diff as _max_diff, mixed_params as _params,
                              norm64 as _norm, per_step_grads as _grads, run_jitted as _run)

STEPS = 20
SCHEDULE = schedules.warmup_then("polynomial", 10.0, total_steps=STEPS, warmup_steps=4,
                                 end_value=0.1)
LRS = [float(SCHEDULE(t)) for t in range(STEPS)]
MASK = masks.exclude_bias_and_norm


PARAMS = _params()
GRADS = _grads(PARAMS, STEPS)
MASKED = {"weight_decay": 0.01, "weight_decay_mask": MASK, "trust_ratio_mask": MASK}

# One compiled run per configuration, shared by the tests (compilation dominates their time).
RUNS = {
    "default": lambda: lars(SCHEDULE),
    "optax_default": lambda: optax.lars(SCHEDULE),
    "masked": lambda: lars(SCHEDULE, nesterov=True, eps=1e-3, **MASKED),
    "optax_masked": lambda: optax.lars(SCHEDULE, nesterov=True, eps=1e-3, **MASKED),
    "mlperf": lambda: lars(SCHEDULE, ratio="mlperf", weight_decay=1.0, eps=1e-3, momentum=0.8),
    "mlperf_masked": lambda: lars(SCHEDULE, ratio="mlperf", nesterov=True, **MASKED),
    "mlperf_no_decay": lambda: lars(SCHEDULE, ratio="mlperf"),
}


@functools.cache
def _history(name):
  return _run(RUNS[name](), PARAMS, GRADS)


def _reference(params, grads, lrs, ratio, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001,
               eps=0.0, nesterov=False, weight_decay_mask=masks.all_params,
               trust_ratio_mask=masks.all_params):
  """LARS in float64 numpy, lr inside the momentum: params per step.

  ratio="paper": eta ||w|| / (||g|| + wd ||w|| + eps), You et al. 2017 Algorithm 1 and the MLPerf
  reference (1 if ||w|| or ||g|| is 0); ratio="combined": eta ||w|| / (||g + wd w|| + eps), the
  SimCLR classic-momentum LARS (1 if ||w|| or ||g + wd w|| is 0).
  """
  decayed, trusted = weight_decay_mask(params), trust_ratio_mask(params)
  w = {k: np.asarray(p, np.float64) for k, p in params.items()}
  velocity = {k: np.zeros_like(p) for k, p in w.items()}
  out = []
  for grad, lr in zip(grads, lrs):
    for k in w:
      g = np.asarray(grad[k], np.float64)
      wd = weight_decay if decayed[k] else 0.0
      u = g + wd * w[k]
      w_norm = _norm(w[k])
      if ratio == "paper":
        tested, denominator = _norm(g), _norm(g) + wd * w_norm + eps
      else:
        tested, denominator = _norm(u), _norm(u) + eps
      adapt = trusted[k] and w_norm > 0 and tested > 0
      local_lr = trust_coefficient * w_norm / denominator if adapt else 1.0
      velocity[k] = momentum * velocity[k] + lr * local_lr * u
      step = momentum * velocity[k] + lr * local_lr * u if nesterov else velocity[k]
      w[k] = w[k] - step
    out.append(dict(w))
  return out


@pytest.mark.parametrize("name", ["default", "masked"])
def test_equals_optax_lars(name):
  (ours, our_state), (theirs, their_state) = _history(name), _history("optax_" + name)
  assert max(_max_diff(a, b) for a, b in zip(ours, theirs, strict=True)) < 1e-6
  trace = lambda state: optax.tree.get(state, "trace")
  assert _max_diff(trace(our_state), trace(their_state)) < 1e-6


@pytest.mark.parametrize("name, ratio, kwargs", [
    ("masked", "combined", dict(nesterov=True, eps=1e-3, **MASKED)),
    ("mlperf", "paper", dict(weight_decay=1.0, eps=1e-3, momentum=0.8)),
    ("mlperf_masked", "paper", dict(nesterov=True, **MASKED)),
])
def test_matches_numpy_reference(name, ratio, kwargs):
  _assert_matches_reference(_history(name)[0], _reference(PARAMS, GRADS, LRS, ratio, **kwargs))


def test_mlperf_ratio_differs_from_optax_ratio_only_with_weight_decay():
  with pytest.raises(AssertionError):
    _assert_matches_reference(_history("mlperf")[0], _reference(
        PARAMS, GRADS, LRS, "combined", weight_decay=1.0, eps=1e-3, momentum=0.8))
  no_decay, optax_form = _history("mlperf_no_decay")[0], _history("default")[0]
  assert max(_max_diff(a, b) for a, b in zip(no_decay, optax_form)) == 0.0


def test_first_step_norm_is_lr_times_trust_coefficient_times_weight_norm():
  """lr is 0 at step 1 (warmup), so at step 2 the momentum is empty: ||dw|| = lr eta ||w||."""
  before, update = _history("default")[0][1]
  for k in ("conv_kernel", "dense_kernel", "dense_bias", "scale"):
    np.testing.assert_allclose(_norm(update[k]), LRS[1] * 1e-3 * _norm(before[k]), rtol=1e-5,
                               err_msg=k)


@pytest.mark.parametrize("name", ["default", "mlperf"])
def test_zero_weight_norm_gives_ratio_one(name):
  """The zero kernel takes a raw -lr * g step at step 2, not -lr * eta * g."""
  before, update = _history(name)[0][1]
  assert _norm(before["zero_kernel"]) == 0
  np.testing.assert_allclose(update["zero_kernel"], -LRS[1] * GRADS[1]["zero_kernel"], rtol=1e-6)


@pytest.mark.parametrize("name", ["masked", "mlperf_masked"])
def test_masked_leaves_get_no_decay_and_no_trust_ratio(name):
  """Step 2 (empty momentum): bias and scalar move by -(1 + momentum) lr g (nesterov), no more."""
  before, update = _history(name)[0][1]
  for k in ("dense_bias", "scale"):
    np.testing.assert_allclose(update[k], -1.9 * LRS[1] * GRADS[1][k], rtol=1e-6, err_msg=k)
  kernel = -1.9 * LRS[1] * (GRADS[1]["dense_kernel"] + 0.01 * before["dense_kernel"])
  assert _norm(update["dense_kernel"] - kernel) > 0.1 * _norm(kernel)  # the kernel is adapted


def test_unknown_ratio_is_rejected():
  with pytest.raises(ValueError, match="ratio='paper'"):
    lars(1.0, ratio="paper")


@pytest.mark.parametrize("ratio", LARS_RATIOS)
def test_gradient_through_the_update_is_finite_at_zero_norms(ratio):
  """d(update)/d(params) is finite at ||w|| = 0 and at ||g|| = 0 (optax.lars gives NaN there)."""
  params = {"zero_kernel": jnp.zeros((6, 5)), "dense_kernel": PARAMS["dense_kernel"]}
  grads = {"zero_kernel": GRADS[0]["zero_kernel"], "dense_kernel": jnp.zeros((8, 5))}
  tx = lars(0.1, ratio=ratio)

  def total_update(params):
    update, _ = tx.update(grads, tx.init(params), params)
    return sum(jnp.sum(x) for x in jax.tree.leaves(update))

  for leaf in jax.tree.leaves(jax.jit(jax.grad(total_update))(params)):
    assert np.all(np.isfinite(leaf))
