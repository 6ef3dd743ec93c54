"""The partially observable variant (Chandak et al., ICML 2023, Sec. 5, after predictive
state representations): decompose the matrix from histories to futures instead of states to
next states.

A GRU reads the history h_t = (o_{t-L+1}, a_{t-L+1}, ..., o_t) into phi(h_t) in R^k; an MLP
embeds the future f_t = (a_t, o_{t+1}, a_{t+1}, ..., o_{t+K}) into psi(f_t). The spectral
objective (svd_representation.spectral_loss) runs on matched pairs (h_i, f_i) of one batch
of windows, with the other batch members' futures as negatives (all pairs i != j: h_i and
f_j come from different windows, so independent draws of the data's marginals,
rho_1 = p(h), rho_2 = p(f), weight 1). Its optimum has phi(h)^T psi(f) = the rank-k
projection of p(f | h) / p(f): phi(h_t) is a predictive state, a statistic of the history
that predicts the future observations, so it can tell apart states that share an
observation. L = 1 is the same objective on single observations.

`windows` cuts histories and futures from behaviour trajectories in a tabular environment
(`tabular_envs.behaviour_transitions` order: time-major), dropping those that cross an
episode end.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from big_batch.rl import svd_representation as svd


def windows(env, obs: np.ndarray, states, actions, next_states, num_envs: int, history: int,
            future: int):
  """(history_inputs [N, L, d + A], future_inputs [N, K (A + d)], hidden_states [N]) of every
  window of L observations (each with the one-hot of the action taken after it, zero for
  the last: a_t belongs to the future) followed by K more steps, from time-major
  transitions; windows across an episode end are dropped."""
  steps = len(states) // num_envs
  s = np.asarray(states).reshape(steps, num_envs)
  a = np.asarray(actions).reshape(steps, num_envs)
  t = np.asarray(next_states).reshape(steps, num_envs)
  cut = t != np.roll(s, -1, axis=0)  # The step after is a reset (or the data's end).
  cut[-1] = True
  eye = np.eye(env.num_actions, dtype=np.float32)
  hist, fut, hidden = [], [], []
  for start in range(0, steps - history - future + 1):
    end = start + history  # The window's current time is end - 1.
    ok = ~cut[start:end + future - 1].any(0)
    for e in np.flatnonzero(ok):
      o = obs[s[start:end, e]]
      acts = eye[a[start:end, e]]
      acts[-1] = 0.0
      hist.append(np.concatenate([o, acts], -1))
      future_obs = obs[t[end - 1:end - 1 + future, e]]
      future_acts = eye[a[end - 1:end - 1 + future, e]]
      fut.append(np.concatenate([future_acts, future_obs], -1).reshape(-1))
      hidden.append(s[end - 1, e])
  return (np.asarray(hist, np.float32), np.asarray(fut, np.float32), np.asarray(hidden))


def init(rng, input_dim: int, future_dim: int, rank: int, hidden: int = 64,
         scale: float = 0.1):
  """{'gru': ..., 'phi': ..., 'psi': ...}: a GRU over history steps, its linear read-out phi
  and an MLP psi over the flattened future."""
  k = jax.random.split(rng, 5)
  d = input_dim + hidden
  gru = {"w": jax.random.normal(k[0], (d, 3 * hidden)) / np.sqrt(d),
         "b": jnp.zeros(3 * hidden)}
  phi = {"w": scale * jax.random.normal(k[1], (hidden, rank)) / np.sqrt(hidden)}
  psi = {"w1": jax.random.normal(k[2], (future_dim, hidden)) / np.sqrt(future_dim),
         "b1": jnp.zeros(hidden),
         "w2": scale * jax.random.normal(k[3], (hidden, rank)) / np.sqrt(hidden)}
  return {"gru": gru, "phi": phi, "psi": psi}


def gru(params, inputs):
  """The last hidden state of a GRU (Cho et al. 2014) over inputs [B, L, d]."""
  hidden = params["b"].shape[0] // 3
  batch = inputs.shape[0]

  def cell(h, x):
    zr_n = jnp.concatenate([x, h], -1) @ params["w"] + params["b"]
    z, r = jax.nn.sigmoid(zr_n[:, :hidden]), jax.nn.sigmoid(zr_n[:, hidden:2 * hidden])
    n_in = jnp.concatenate([x, r * h], -1) @ params["w"][:, 2 * hidden:] + params["b"][2 * hidden:]
    h = (1 - z) * h + z * jnp.tanh(n_in)
    return h, None

  h, _ = jax.lax.scan(cell, jnp.zeros((batch, hidden)), jnp.swapaxes(inputs, 0, 1))
  return h


def encode_history(params, history):
  """phi(h) [B, k]."""
  return gru(params["gru"], history) @ params["phi"]["w"]


def encode_future(params, future):
  """psi(f) [B, k]."""
  return svd.encode(params["psi"], future)


def loss(params, history, future):
  """The spectral objective on a batch of matched (h_i, f_i): attraction on the pairs,
  repulsion on every (h_i, f_j), i != j (module docstring)."""
  phi, psi = encode_history(params, history), encode_future(params, future)
  n = phi.shape[0]
  off_diagonal = (1.0 - jnp.eye(n)) * n / (n - 1)  # The mean over i != j.
  return svd.spectral_loss(phi, psi, phi, psi, off_diagonal)[0]


def fit(history, future, rank: int, rng, steps: int = 1000, batch: int = 256,
        learning_rate: float = 3e-3, hidden: int = 64):
  """Parameters after `steps` Adam steps (cosine-decayed) on random mini-batches of windows."""
  k_init, k_run = jax.random.split(rng)
  params = init(k_init, history.shape[-1], future.shape[-1], rank, hidden)
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  history, future = jnp.asarray(history), jnp.asarray(future)

  def step(carry, key):
    p, o = carry
    rows = jax.random.randint(key, (batch,), 0, history.shape[0])
    g = jax.grad(loss)(p, history[rows], future[rows])
    u, o = tx.update(g, o, p)
    return (optax.apply_updates(p, u), o), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(k_run, steps))
  return params


def probe_accuracy(features_train, labels_train, features_test, labels_test,
                   num_classes: int, ridge: float = 1e-3) -> float:
  """Accuracy of a ridge-regression linear probe (one-hot targets, argmax) on held-out rows."""
  x = np.concatenate([features_train, np.ones((len(features_train), 1))], 1)
  y = np.eye(num_classes)[labels_train]
  w = np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ y)
  xt = np.concatenate([features_test, np.ones((len(features_test), 1))], 1)
  return float(np.mean(np.argmax(xt @ w, 1) == labels_test))


def observation_bayes_accuracy(obs_keys, labels) -> float:
  """The best accuracy of any function of the current observation alone: sum over
  observations of the most frequent hidden state's share (the aliasing limit)."""
  total = 0
  for key in np.unique(obs_keys):
    total += np.bincount(labels[obs_keys == key]).max()
  return total / len(labels)
