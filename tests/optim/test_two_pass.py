"""big_batch.optim.two_pass: LAMB's and optax-LARS's step write no direction-sized buffer,
equal their optax chains (state included) in every branch, and keep the chains' contracts."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from big_batch.optim import masks, schedules, trust_ratio
from big_batch.optim.layerwise import lamb, lars, scale_by_adam_without_bias_correction
from optimizer_cases import max_abs_diff, mixed_params, per_step_grads, run_jitted

MASK = masks.exclude_bias_and_norm
SCHEDULE = schedules.warmup_then("cosine", 0.1, total_steps=6, warmup_steps=2)
# Two leaves of one shape: their broadcasts are the ones XLA's CSE would share.
KERNELS = {"a": jnp.ones((64, 256)), "b": jnp.full((64, 256), 0.5), "bias": jnp.ones((256,))}


def _lamb_chain(learning_rate, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.0,
                weight_decay_mask=None, trust_ratio_mask=None, max_grad_norm=None,
                bias_correction=True):
  """LAMB as the optax chain the two-pass update stands for (layerwise.lamb's docstring)."""
  clip = [] if max_grad_norm is None else [optax.clip_by_global_norm(max_grad_norm)]
  adam = (optax.scale_by_adam(b1, b2, eps) if bias_correction
          else scale_by_adam_without_bias_correction(b1, b2, eps))
  return optax.chain(*clip, adam, optax.add_decayed_weights(weight_decay, weight_decay_mask),
                     trust_ratio.scale_by_trust_ratio(mask=trust_ratio_mask),
                     optax.scale_by_learning_rate(learning_rate))


def _lars_chain(learning_rate, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001, eps=0.0,
                nesterov=False, weight_decay_mask=None, trust_ratio_mask=None):
  return optax.chain(
      optax.add_decayed_weights(weight_decay, weight_decay_mask),
      trust_ratio.scale_by_trust_ratio(trust_coefficient, eps, mask=trust_ratio_mask),
      optax.scale_by_learning_rate(learning_rate),
      optax.trace(decay=momentum, nesterov=nesterov))


def _temp_bytes(tx, params):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), params).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("ours, chain", [
    (lambda: lamb(1e-3, weight_decay=0.01), lambda: _lamb_chain(1e-3, weight_decay=0.01)),
    (lambda: lars(1.0, weight_decay=0.01), lambda: _lars_chain(1.0, weight_decay=0.01)),
], ids=["lamb", "lars"])
def test_step_writes_no_direction_sized_buffer(ours, chain):
  """XLA's scratch memory for the jitted step is smaller than one kernel; the chain's holds
  at least one (the direction, shared by the norm and the scaled update)."""
  kernel = KERNELS["a"].nbytes
  assert _temp_bytes(chain(), KERNELS) >= kernel
  assert _temp_bytes(ours(), KERNELS) < kernel


LAMB_CASES = {
    "default": {},
    "masked": dict(weight_decay=0.1, weight_decay_mask=MASK, trust_ratio_mask=MASK),
    "nvlamb": dict(b1=0.8, b2=0.99, eps=1e-3, weight_decay=0.01, max_grad_norm=1.0,
                   bias_correction=False),
}
LARS_CASES = {
    "default": {},
    "masked": dict(weight_decay=0.01, nesterov=True, eps=1e-3, weight_decay_mask=MASK,
                   trust_ratio_mask=MASK),
}


@pytest.mark.parametrize("ours, chain, kwargs", [
    *[(lamb, _lamb_chain, kwargs) for kwargs in LAMB_CASES.values()],
    *[(lars, _lars_chain, kwargs) for kwargs in LARS_CASES.values()],
], ids=[f"lamb-{k}" for k in LAMB_CASES] + [f"lars-{k}" for k in LARS_CASES])
def test_equals_its_chain_with_the_same_state(ours, chain, kwargs):
  """Updates and state (types, structure, values) of the chain, on the mixed-shape case with a
  zero kernel and leaves on scales 1e-2..1e2, under a warmup-cosine schedule."""
  params = mixed_params()
  grads = per_step_grads(params, 6)
  (got, got_state), (want, want_state) = (run_jitted(ours(SCHEDULE, **kwargs), params, grads),
                                          run_jitted(chain(SCHEDULE, **kwargs), params, grads))
  assert max(max_abs_diff(a, b) for a, b in zip(got, want, strict=True)) < 1e-6
  assert jax.tree.structure(got_state) == jax.tree.structure(want_state)
  assert max_abs_diff(got_state, want_state) < 1e-6


@pytest.mark.parametrize("ours, reference", [
    (lambda wd: lamb(0.1, weight_decay=wd), lambda wd: optax.lamb(0.1, weight_decay=wd)),
    (lambda wd: lars(1.0, weight_decay=wd), lambda wd: optax.lars(1.0, weight_decay=wd)),
], ids=["lamb", "lars"])
def test_weight_decay_schedule_is_followed(ours, reference):
  """A weight-decay schedule (its own count in the decay's state) gives optax's steps."""
  decay = optax.linear_schedule(0.0, 0.5, 4)
  params = mixed_params()
  grads = per_step_grads(params, 4)
  got = run_jitted(ours(decay), params, grads)[0]
  want = run_jitted(reference(decay), params, grads)[0]
  assert max(max_abs_diff(a, b) for a, b in zip(got, want, strict=True)) < 1e-6


@pytest.mark.parametrize("tx", [lamb(0.1), lars(1.0)], ids=["lamb", "lars"])
def test_update_accepts_extra_arguments_as_optax_chains_do(tx):
  params = {"w": jnp.ones((3, 2))}
  updates, _ = tx.update(params, tx.init(params), params, value=jnp.zeros([]))
  assert np.all(np.isfinite(np.asarray(updates["w"])))
  with pytest.raises(ValueError, match="needs the params"):
    tx.update(params, tx.init(params))


@pytest.mark.parametrize("tx, step_per_weight_norm", [
    (lamb(0.1, weight_decay=0.01), 0.1),
    (lars(1.0, weight_decay=0.01), 1.0 * 1e-3),
], ids=["lamb", "lars"])
def test_bfloat16_leaves_keep_their_dtype_and_norm(tx, step_per_weight_norm):
  """Updates and state stay bfloat16, and the first step is still ||dw|| = lr ||w|| (LARS:
  lr eta ||w||) with ||w|| = 96, whose square overflows no float32 norm."""
  params = {"w": jnp.full((32, 32), 3.0, jnp.bfloat16)}
  grads = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(32, 32)), jnp.bfloat16)}
  updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
  assert updates["w"].dtype == jnp.bfloat16
  assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(state) if leaf.ndim)
  norm = float(jnp.linalg.norm(updates["w"].astype(jnp.float32)))
  np.testing.assert_allclose(norm, step_per_weight_norm * 96.0, rtol=2e-2)
