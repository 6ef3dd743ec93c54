"""scaling/momentum_scaling.py: the batch-size rules of Kosson et al. 2021 keep the momentum
time constant in samples and each sample's total step lr / ((1 - m) batch)."""
import math

import jax
import jax.numpy as jnp
import optax
import pytest

from big_batch.scaling import momentum_scaling as ms


@pytest.mark.parametrize("batch", [1, 4, 32, 128, 512])
def test_momentum_decay_per_sample_is_kept(batch):
  m = ms.scale_momentum(0.9, 128, batch)
  assert m ** (128 / batch) == pytest.approx(0.9, rel=1e-12)
  assert ms.momentum_time_constant(m, batch) == pytest.approx(
      ms.momentum_time_constant(0.9, 128), rel=1e-10)


@pytest.mark.parametrize("batch", [1, 4, 32, 512])
def test_each_samples_total_step_is_kept(batch):
  m = ms.scale_momentum(0.9, 128, batch)
  lr = ms.scale_learning_rate_for_momentum(0.3, 0.9, 128, batch)
  assert lr / ((1 - m) * batch) == pytest.approx(0.3 / ((1 - 0.9) * 128), rel=1e-12)


def test_the_total_step_is_the_impulse_response_of_optax_momentum_sgd():
  """lr / (1 - m) is what optax.sgd moves the weights in all for a unit gradient."""
  m = ms.scale_momentum(0.9, 128, 4)
  lr = ms.scale_learning_rate_for_momentum(0.3, 0.9, 128, 4)
  tx = optax.sgd(lr, momentum=m)
  grads = jnp.zeros(5000).at[0].set(1.0)  # m^5000 < 1e-7: the tail is negligible.

  def step(state, g):
    u, state = tx.update(g, state)
    return state, -u

  _, moves = jax.lax.scan(step, tx.init(jnp.zeros(())), grads)
  assert float(moves.sum()) == pytest.approx(lr / (1 - m), rel=1e-4)


def test_no_momentum_is_the_linear_rule_and_base_batch_is_identity():
  assert ms.scale_learning_rate_for_momentum(0.2, 0.0, 128, 32) == pytest.approx(0.05)
  assert ms.scale_momentum(0.9, 128, 128) == 0.9
  assert ms.scale_learning_rate_for_momentum(0.2, 0.9, 128, 128) == pytest.approx(0.2)


def test_time_constant_matches_the_e_folding_of_momentum():
  m, batch = 0.99, 8
  tau = ms.momentum_time_constant(m, batch)
  assert m ** (tau / batch) == pytest.approx(math.exp(-1))
  assert tau == pytest.approx(batch / (1 - m), rel=0.01)


@pytest.mark.parametrize("call, message", [
    (lambda: ms.scale_momentum(1.0, 128, 4), "momentum=1.0"),
    (lambda: ms.scale_momentum(0.9, 0, 4), "base_batch=0"),
    (lambda: ms.scale_learning_rate_for_momentum(0.1, 0.9, 128, -2), "batch=-2"),
    (lambda: ms.momentum_time_constant(0.0, 4), "momentum=0.0"),
])
def test_bad_values_are_named(call, message):
  with pytest.raises(ValueError, match=message):
    call()
