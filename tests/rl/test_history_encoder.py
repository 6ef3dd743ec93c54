"""The POMDP variant (rl/history_encoder.py): windows against the table, the GRU against a
NumPy loop, and the predictive state beating every function of the current observation on
MiniGrid's aliased partial views."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.rl import history_encoder as he
from big_batch.rl import tabular_envs


def test_windows_line_up_with_the_transition_table():
  env = tabular_envs.four_rooms()
  obs = tabular_envs.observations(env, "one_hot")
  s, a, t = tabular_envs.behaviour_transitions(env, (0.25,) * 4, jax.random.key(0), 3, 40)
  hist, fut, hidden = he.windows(env, obs, s, a, t, 3, history=3, future=2)
  assert hist.shape[1:] == (3, 104 + 4) and fut.shape[1] == 2 * (4 + 104)
  for h, f, state in zip(hist, fut, hidden):
    assert np.argmax(h[-1, :104]) == state and not h[-1, 104:].any()
    prev, act = np.argmax(h[-2, :104]), np.argmax(h[-2, 104:])
    assert env.next_state[prev, act] == state  # Consecutive observations, actions between.
    a0, o1 = np.argmax(f[:4]), np.argmax(f[4:108])
    a1, o2 = np.argmax(f[108:112]), np.argmax(f[112:])
    assert env.next_state[state, a0] == o1 and env.next_state[o1, a1] == o2


def test_gru_matches_a_numpy_loop():
  params = he.init(jax.random.key(0), 5, 4, 3, hidden=6)["gru"]
  x = np.random.default_rng(0).normal(size=(2, 4, 5)).astype(np.float32)
  w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
  sig = lambda v: 1 / (1 + np.exp(-v))
  h = np.zeros((2, 6))
  for step in range(4):
    xh = np.concatenate([x[:, step], h], 1)
    z, r = sig(xh @ w[:, :6] + b[:6]), sig(xh @ w[:, 6:12] + b[6:12])
    n = np.tanh(np.concatenate([x[:, step], r * h], 1) @ w[:, 12:] + b[12:])
    h = (1 - z) * h + z * n
  np.testing.assert_allclose(he.gru(params, jnp.asarray(x)), h, rtol=1e-5, atol=1e-6)


def test_probes_and_the_aliasing_bound_by_hand():
  keys = np.array([0, 0, 0, 1, 1])
  labels = np.array([2, 2, 3, 4, 5])
  assert he.observation_bayes_accuracy(keys, labels) == pytest.approx(3 / 5)
  x = np.eye(3)[[0, 1, 2, 0, 1, 2]]
  assert he.probe_accuracy(x, np.array([0, 1, 2, 0, 1, 2]), x, np.array([0, 1, 2, 0, 1, 2]),
                           3) == 1.0


@pytest.mark.slow
def test_history_representation_resolves_aliased_observations():
  """MiniGrid-Empty-8x8's 7x7 views alias its 144 agent states (86 distinct views): a 5-NN
  classifier on phi(h) of 4-step histories names the hidden state more often than the best
  possible function of the current view alone."""
  pytest.importorskip("minigrid")
  neighbors = pytest.importorskip("sklearn.neighbors")
  env = tabular_envs.make("minigrid_Empty-8x8")
  obs = tabular_envs.observations(env, "pixels")
  s, a, t = tabular_envs.behaviour_transitions(env, (0.25, 0.25, 0.5), jax.random.key(0), 32,
                                               250)
  hist, fut, hidden = he.windows(env, obs, s, a, t, 32, history=4, future=3)
  train = np.arange(len(hidden)) < int(0.8 * len(hidden))
  params = jax.jit(he.fit, static_argnums=(2, 4))(hist[train], fut[train], 32,
                                                  jax.random.key(1), 600)
  phi = np.asarray(he.encode_history(params, hist))
  knn = neighbors.KNeighborsClassifier(5).fit(phi[train], hidden[train])
  accuracy = knn.score(phi[~train], hidden[~train])
  view = np.unique(obs, axis=0, return_inverse=True)[1].reshape(-1)[hidden]
  bound = he.observation_bayes_accuracy(view[~train], hidden[~train])
  assert bound < 0.7 and accuracy > bound
