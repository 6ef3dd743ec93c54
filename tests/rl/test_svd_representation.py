"""The spectral objective (rl/svd_representation.py) against the exact SVD of D P^pi on four
rooms: subspaces by principal angles, reconstruction error against Eckart-Young's optimum,
pseudo-counts against true counts, and the mini-batch gradient against the full matrix's."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from big_batch.rl import counts, offline_fit, tabular_envs
from big_batch.rl import svd_representation as svd

# A behaviour policy skewed towards right and down (up, right, down, left): visits pile up
# along the diagonal to the goal, rarely in the far rooms' corners.
SKEWED = (0.15, 0.35, 0.35, 0.15)


@functools.lru_cache(maxsize=None)
def four_rooms_data():
  env = tabular_envs.four_rooms()
  s, _, t = tabular_envs.behaviour_transitions(env, SKEWED, jax.random.key(0), 32, 1000)
  s, t = np.asarray(s), np.asarray(t)
  return env, s, t, svd.empirical_dp(s, t, env.num_states)


def fit(s, t, num_states, kind, rank, obs=None, lr=1e-2, seed=0, steps=2000, hidden=128):
  phi, psi = jax.jit(offline_fit.fit, static_argnames=("num_states", "kind", "rank", "steps",
                                                       "hidden"))(
      s, t, num_states=num_states, kind=kind, rank=rank, rng=jax.random.key(seed), obs=obs,
      learning_rate=lr, steps=steps, hidden=hidden)
  return np.asarray(phi), np.asarray(psi)


def test_learned_subspace_matches_the_exact_top_k_svd_and_error_falls_with_k():
  env, s, t, m = four_rooms_data()
  learned, exact = [], []
  for k in (2, 4, 8):
    phi, psi = fit(s, t, env.num_states, "table", k)
    u, sv, v = svd.top_k_svd(m, k)
    assert np.degrees(svd.principal_angles(phi, u)[-1]) < 15.0, k
    learned.append(svd.reconstruction_error(phi, psi, m))
    exact.append(svd.reconstruction_error(u * sv, v, m))
  # Eckart-Young: nothing of rank k does better than the top-k SVD; SGD gets within 3%.
  assert all(e <= l + 1e-9 for e, l in zip(exact, learned))
  np.testing.assert_allclose(learned, exact, rtol=0.03)
  assert learned[0] > learned[1] > learned[2]


def test_an_mlp_on_one_hot_observations_learns_the_same_subspace():
  env, s, t, m = four_rooms_data()
  obs = tabular_envs.observations(env, "one_hot")
  phi, psi = fit(s, t, env.num_states, "mlp", 2, obs=obs, lr=3e-3, hidden=64)
  u, sv, v = svd.top_k_svd(m, 2)
  assert np.degrees(svd.principal_angles(phi, u)[-1]) < 5.0
  np.testing.assert_allclose(svd.reconstruction_error(phi, psi, m),
                             svd.reconstruction_error(u * sv, v, m), rtol=0.03)


def test_pseudo_counts_track_true_visits_under_a_skewed_policy():
  env, s, t, m = four_rooms_data()
  visits = np.bincount(s, minlength=env.num_states)
  assert visits.max() > 50 * max(visits.min(), 1)  # The policy is skewed indeed.
  phi, psi = fit(s, t, env.num_states, "table", 16)
  gram = counts.psi_gram(jnp.asarray(psi), 1.0)  # all states once: the exact sum
  pseudo = np.asarray(counts.pseudo_counts(jnp.asarray(phi), gram, len(s)))
  assert stats.spearmanr(pseudo, visits).correlation > 0.9
  # Full rank, the estimate is N ||D P[s]|| = n(s) ||P[s]||, within [1/2, 1] of n(s) here.
  u, sv, v = svd.top_k_svd(m, env.num_states)
  full = np.asarray(counts.pseudo_counts(jnp.asarray(u * sv), jnp.asarray(v.T @ v), len(s)))
  assert np.all(full <= visits + 1e-6) and np.all(full >= visits / 2 - 1e-6)


def test_pseudo_counts_do_not_depend_on_the_factorisation():
  rng = np.random.default_rng(0)
  phi, psi = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
  r = rng.normal(size=(3, 3)) + 3 * np.eye(3)
  a = counts.pseudo_counts(jnp.asarray(phi), jnp.asarray(psi.T @ psi), 10)
  psi_r = psi @ np.linalg.inv(r).T
  b = counts.pseudo_counts(jnp.asarray(phi @ r), jnp.asarray(psi_r.T @ psi_r), 10)
  np.testing.assert_allclose(a, b, rtol=1e-4)
  np.testing.assert_allclose(a, 10 * np.linalg.norm(phi @ psi.T, axis=1), rtol=1e-5)
  np.testing.assert_allclose(counts.count_bonus(jnp.array([0.0, 3.0]), 2.0), [2.0, 1.0])


def small_chain():
  """A random 6-state chain: d, P and M = D P, with Phi, Psi tables of rank 3."""
  rng = np.random.default_rng(1)
  p = rng.dirichlet(np.ones(6), size=6)
  d = rng.dirichlet(np.ones(6))
  phi, psi = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
  return d, p, d[:, None] * p, {"phi": {"table": jnp.asarray(phi, jnp.float32)},
                                "psi": {"table": jnp.asarray(psi, jnp.float32)}}


def full_gradient(params, m):
  return jax.grad(lambda p: svd.full_objective(p["phi"]["table"], p["psi"]["table"],
                                               jnp.asarray(m, jnp.float32)))(params)


def test_full_objective_is_the_frobenius_error_up_to_a_constant():
  _, _, m, params = small_chain()
  phi, psi = (np.asarray(params[k]["table"], np.float64) for k in ("phi", "psi"))
  expected = np.linalg.norm(m - phi @ psi.T) ** 2 - np.linalg.norm(m) ** 2
  np.testing.assert_allclose(svd.full_objective(phi, psi, m), expected, rtol=1e-5)


def test_the_mini_batch_gradient_is_unbiased_exactly_by_enumeration():
  """E[grad L^] over every (s, s') with probability d(s) P(s'|s) and every (u, u~) with
  probability 1/|S|^2, for one-row batches, is the full objective's gradient."""
  _, _, m, params = small_chain()
  n = 6
  grid = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)

  def grad_one(pair, anchor_pair):
    batch = {"state": pair[:1], "next_state": pair[1:], "anchor": anchor_pair[:1],
             "negative": anchor_pair[1:]}
    return jax.grad(lambda p: svd.loss_on_batch(p, batch, float(n) ** 2)[0])(params)

  grads = jax.vmap(jax.vmap(grad_one, (None, 0)), (0, None))(jnp.asarray(grid),
                                                              jnp.asarray(grid))
  weights = jnp.asarray(np.outer(m.reshape(-1), np.full(n * n, 1.0 / n ** 2)), jnp.float32)
  mean = jax.tree.map(lambda g: jnp.tensordot(weights, g, axes=([0, 1], [0, 1])), grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), mean,
               full_gradient(params, m))


def test_the_mini_batch_gradient_is_unbiased_by_monte_carlo():
  d, p, m, params = small_chain()
  n, batch, draws = 6, 32, 1000
  key = jax.random.key(0)

  def one(key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    s = jax.random.categorical(k1, jnp.log(jnp.asarray(d)), shape=(batch,))
    t = jax.random.categorical(k2, jnp.log(jnp.asarray(p))[s])
    b = {"state": s, "next_state": t, "anchor": jax.random.randint(k3, (batch,), 0, n),
         "negative": jax.random.randint(k4, (batch,), 0, n)}
    return jax.grad(lambda q: svd.loss_on_batch(q, b, float(n) ** 2)[0])(params)

  grads = jax.jit(jax.vmap(one))(jax.random.split(key, draws))
  full = full_gradient(params, m)
  for g, f in zip(jax.tree.leaves(grads), jax.tree.leaves(full)):
    g = np.asarray(g)
    error = np.abs(g.mean(0) - np.asarray(f))
    assert np.all(error <= 5 * g.std(0) / np.sqrt(draws) + 1e-6)


@pytest.mark.parametrize("shape", [(5, 2), (6, 3)])
def test_principal_angles_against_a_hand_rotation(shape):
  """span(e1, e2) against span(e1, cos t e2 + sin t e3): angles (0, t)."""
  theta = 0.3
  a = np.eye(shape[0])[:, :2]
  b = np.stack([np.eye(shape[0])[0], np.cos(theta) * np.eye(shape[0])[1]
                + np.sin(theta) * np.eye(shape[0])[2]], 1) @ np.array([[2.0, 1.0], [0.0, 1.0]])
  np.testing.assert_allclose(svd.principal_angles(a, b), [0.0, theta], atol=1e-7)
