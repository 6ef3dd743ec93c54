"""optim/delayed.py: stale gradients, Spike Compensation and Linear Weight Prediction against
optax momentum SGD, the closed-form impulse response, the LWP identity and a convex
quadratic with per-stage delays (Kosson et al. 2021; parallelism.md §10)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from big_batch import optim
from big_batch.optim import delayed

LR, MOMENTUM = 0.1, 0.9


def _params():
  rng = np.random.default_rng(0)
  return {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
          "bias": jnp.asarray(rng.normal(size=(3,)), jnp.float32)}


def _grads(steps, seed=1):
  rng = np.random.default_rng(seed)
  return [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), _params())
          for _ in range(steps)]


def _updates(tx, grads, params=None):
  params = _params() if params is None else params
  state, out = tx.init(params), []
  for g in grads:
    u, state = tx.update(g, state, params)
    params = optax.apply_updates(params, u)
    out.append(u)
  return out, params, state


def _assert_equal_trees(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("make", [
    lambda: delayed.delayed(optax.sgd(LR, momentum=MOMENTUM), 0),
    lambda: delayed.sgd_spike_compensation(LR, MOMENTUM, 0),
    lambda: optax.chain(optax.sgd(LR, momentum=MOMENTUM), delayed.linear_weight_prediction(0)),
    lambda: delayed.delayed_sgd(LR, MOMENTUM, delay=0, spike_compensation=True),
], ids=["delayed", "spike_compensation", "linear_weight_prediction", "delayed_sgd"])
def test_zero_delay_is_optax_momentum_sgd_exactly(make):
  grads = _grads(6)
  expected, expected_params, _ = _updates(optax.sgd(LR, momentum=MOMENTUM), grads)
  got, got_params, state = _updates(make(), grads)
  _assert_equal_trees(got, expected)
  _assert_equal_trees(got_params, expected_params)


def test_zero_delay_weight_prediction_is_the_weights():
  tx = optax.chain(optax.sgd(LR, momentum=MOMENTUM), delayed.linear_weight_prediction(0))
  _, params, state = _updates(tx, _grads(3))
  _assert_equal_trees(delayed.predict_weights(params, state[1], 0), params)


def test_delayed_feeds_each_leaf_the_gradient_of_its_own_delay_ago():
  delays = {"kernel": 3, "bias": 1}
  grads = _grads(7)
  got, _, _ = _updates(delayed.delayed(optax.identity(), delays), grads)
  for t, update in enumerate(got):
    for name, d in delays.items():
      expected = grads[t - d][name] if t >= d else jnp.zeros_like(grads[0][name])
      np.testing.assert_array_equal(update[name], expected)


def test_delayed_optimizer_equals_the_inner_one_on_shifted_gradients():
  grads = _grads(8)
  shifted = [jax.tree.map(jnp.zeros_like, grads[0])] * 2 + grads[:-2]
  expected, _, _ = _updates(optax.sgd(LR, momentum=MOMENTUM), shifted)
  got, _, _ = _updates(delayed.delayed(optax.sgd(LR, momentum=MOMENTUM), 2), grads)
  for a, b in zip(got, expected):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("delay", [1, 3, 6])
def test_spike_compensation_impulse_response(delay):
  """A unit gradient sent at step 0, D steps stale: weight moves lr (a + b) at arrival, then
  lr m^(D+k): those of the undelayed gradient from then on, total lr / (1 - m)."""
  steps = 400
  tx = delayed.delayed(delayed.sgd_spike_compensation(LR, MOMENTUM, delay), delay)
  params = {"w": jnp.zeros(())}
  grads = [{"w": jnp.ones(())}] + [{"w": jnp.zeros(())}] * (steps - 1)
  moves = -np.array([float(u["w"]) for u in _updates(tx, grads, params)[0]])
  a, b = MOMENTUM ** delay, sum(MOMENTUM ** k for k in range(delay))
  np.testing.assert_array_equal(moves[:delay], 0.0)
  np.testing.assert_allclose(moves[delay], LR * (a + b), rtol=1e-6)
  k = np.arange(1, 50)
  np.testing.assert_allclose(moves[delay + k], LR * MOMENTUM ** (delay + k), rtol=1e-5)
  np.testing.assert_allclose(moves.sum(), LR / (1 - MOMENTUM), rtol=1e-5)
  # Undelayed momentum: moves lr m^k at step k, so the same from step D on, after arrival.
  undelayed = -np.array([float(u["w"]) for u in _updates(
      optax.sgd(LR, momentum=MOMENTUM), grads, params)[0]])
  np.testing.assert_allclose(moves[delay + 1:delay + 50], undelayed[delay + 1:delay + 50],
                             rtol=1e-5)
  np.testing.assert_allclose(moves[delay], undelayed[:delay + 1].sum(), rtol=1e-5)


def test_spike_coefficients_closed_form():
  assert delayed.spike_coefficients(0.9, 0) == (1.0, 0.0)
  a, b = delayed.spike_coefficients(0.9, 3)
  assert a == pytest.approx(0.729)
  assert b == pytest.approx(1 + 0.9 + 0.81)
  assert delayed.spike_coefficients(0.0, 2) == (0.0, 1.0)


def test_linear_weight_prediction_identity_for_momentum_sgd():
  """w - lr D v = w + D (w_t - w_{t-1}) for plain momentum SGD (parallelism.md §10.4)."""
  delays = {"kernel": 4, "bias": 2}
  tx = optax.chain(optax.sgd(LR, momentum=MOMENTUM), delayed.linear_weight_prediction(delays))
  grads = _grads(5)
  _, before, _ = _updates(tx, grads[:-1])
  _, params, state = _updates(tx, grads)
  velocity = state[0][0].trace  # optax.trace's momentum buffer
  by_velocity = delayed.predict_with_velocity(params, velocity, LR, delays)
  by_difference = delayed.predict_weights(params, state[1], delays)
  for name, d in delays.items():
    by_hand = params[name] + d * (params[name] - before[name])
    np.testing.assert_allclose(by_difference[name], by_hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_velocity[name], by_hand, rtol=1e-5, atol=1e-6)


def test_bad_delays_are_rejected():
  with pytest.raises(ValueError, match="delays must be >= 0"):
    delayed.delayed(optax.identity(), -1).init(_params())
  with pytest.raises(ValueError, match="leaves"):
    delayed.linear_weight_prediction({"kernel": 1}).init(_params())


def test_delayed_sgd_builds_from_a_config():
  config = ml_collections.ConfigDict(dict(name="delayed_sgd", learning_rate=LR,
                                          momentum=MOMENTUM, delay=2, spike_compensation=True))
  built = optim.build(config, total_steps=10).tx
  reference = delayed.delayed(delayed.sgd_spike_compensation(LR, MOMENTUM, 2), 2)
  grads = _grads(6)
  for a, b in zip(_updates(built, grads)[0], _updates(reference, grads)[0]):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8)


def _quadratic_loss(spike_compensation, weight_prediction, stage_delays, lr=0.0015,
                    steps=300):
  """Final 0.5 sum_i lambda_i w_i^2 of momentum SGD on three 'stages' of 8 coordinates
  (lambda from 0.1 to 10), each stage's gradient stage_delays[s] steps stale; LWP evaluates
  the gradient at w + D (w - w_prev)."""
  lam = {s: jnp.linspace(0.1, 10.0, 8) for s in "abc"}
  delays = dict(zip("abc", stage_delays))
  tx = optax.chain(
      delayed.delayed(delayed.sgd_spike_compensation(
          lr, MOMENTUM, delays if spike_compensation else 0), delays),
      delayed.linear_weight_prediction(delays))
  w = jax.tree.map(jnp.ones_like, lam)

  def step(carry, _):
    w, state = carry
    at = delayed.predict_weights(w, state[1], delays) if weight_prediction else w
    update, state = tx.update(jax.tree.map(jnp.multiply, lam, at), state, w)
    return (optax.apply_updates(w, update), state), None

  (w, _), _ = jax.lax.scan(step, (w, tx.init(w)), None, length=steps)
  return float(sum(jnp.sum(0.5 * l * x ** 2) for l, x in zip(lam.values(), w.values())))


def test_on_a_quadratic_delays_degrade_and_sc_lwp_and_both_recover():
  """The paper's convex-quadratic analysis in miniature: delays 8, 4, 0 by stage."""
  undelayed = _quadratic_loss(False, False, (0, 0, 0))
  stale = _quadratic_loss(False, False, (8, 4, 0))
  assert stale > 50 * undelayed
  for sc, lwp in [(True, False), (False, True), (True, True)]:
    recovered = _quadratic_loss(sc, lwp, (8, 4, 0))
    assert recovered < 1.1 * undelayed, (sc, lwp, recovered, undelayed)
