"""SVD representations of the transition structure, learned by a mini-batch objective that
never builds the matrix (Chandak et al., ICML 2023, arXiv 2305.00654, Sec. 3).

The target is the top-k SVD of M = D P^pi (D = diag of the state-visitation distribution d
of the replay data), i.e. Eckart-Young's min over Phi, Psi in R^{|S| x k} of

    ||M - Phi Psi^T||_F^2 = ||M||^2 - 2 sum_{s,s'} d(s) P(s'|s) phi(s)^T psi(s')
                            + sum_{s,s~} (phi(s)^T psi(s~))^2,

whose sample form (`spectral_loss`) is, with transitions (s, s') from the replay buffer and
independent anchor / negative states u ~ rho_1, u~ ~ rho_2,

    L(phi, psi) = -2 E_{(s,s') ~ d P}[phi(s)^T psi(s')]
                  + E_{u ~ rho_1, u~ ~ rho_2}[(phi(u)^T psi(u~))^2 / (rho_1(u) rho_2(u~))].

Every term is a mini-batch mean; the quadratic term uses all B1 x B2 pairs of the two
independent sets (still unbiased, lower variance). With uniform rho over a known state set
the weight is |S|^2. The optimum's product phi(s)^T psi(s') is the rank-k projection of
d(s) P(s'|s), so the reconstructed row of state s has norm ~ d(s) ||P[s]||: visitation counts
"for free" (`counts.py`). The representation is phi(s) (the rows of U_k Sigma_k up to an
invertible k x k map, which subspace checks factor out).

Encoders (`init_encoder`, `encode`): embedding tables indexed by state, or MLPs on
observations (one-hot, coordinates, pixels), one for phi and one for psi.
"""
import jax
import jax.numpy as jnp
import numpy as np

ENCODERS = ("table", "mlp")


def spectral_loss(phi_s, psi_next, phi_anchor, psi_negative, negative_weight,
                  positive_weight=1.0):
  """(L, metrics): the sample objective of the module docstring.

  phi_s, psi_next: [B, k], the transitions' phi(s) and psi(s'), each weighted by
  positive_weight (a scalar or [B]); phi_anchor [B1, k] and psi_negative [B2, k] at
  independent states u ~ rho_1, u~ ~ rho_2; negative_weight is 1 / (rho_1 rho_2) (a scalar,
  |S|^2 for uniform rho, or a [B1, B2] array).
  """
  attraction = -2.0 * jnp.mean(positive_weight * jnp.sum(phi_s * psi_next, -1))
  repulsion = jnp.mean(negative_weight * (phi_anchor @ psi_negative.T) ** 2)
  return attraction + repulsion, {"attraction": attraction, "repulsion": repulsion}


def full_objective(phi, psi, m):
  """-2 tr(Phi^T M Psi) + ||Phi Psi^T||_F^2 = ||M - Phi Psi^T||_F^2 - ||M||_F^2: the objective
  `spectral_loss` estimates, on whole [|S|, k] matrices."""
  return -2.0 * jnp.sum(phi * (m @ psi)) + jnp.sum((phi @ psi.T) ** 2)


def empirical_dp(states, next_states, num_states: int, num_steps: int | None = None):
  """D P^pi of the data: M[s, s'] = #(s -> s') / num_steps (default the number of pairs: the
  empirical joint)."""
  m = np.zeros((num_states, num_states))
  np.add.at(m, (np.asarray(states), np.asarray(next_states)), 1.0)
  return m / max(num_steps or len(states), 1)


def top_k_svd(m: np.ndarray, k: int):
  """(U_k, s_k, V_k) of M's k largest singular values."""
  u, s, vt = np.linalg.svd(m)
  return u[:, :k], s[:k], vt[:k].T


def principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The principal angles (radians, ascending) between the column spaces of a and b
  (Bjorck & Golub 1973: arccos of the singular values of Q_a^T Q_b)."""
  qa, _ = np.linalg.qr(np.asarray(a, np.float64))
  qb, _ = np.linalg.qr(np.asarray(b, np.float64))
  cosines = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1.0, 1.0)
  return np.sort(np.arccos(cosines))


def energy_captured(a: np.ndarray, target: np.ndarray) -> float:
  """||Q_a^T target||_F^2 / ||target||_F^2: the share of target's columns inside span(a)."""
  qa, _ = np.linalg.qr(np.asarray(a, np.float64))
  target = np.asarray(target, np.float64)
  return float(np.sum((qa.T @ target) ** 2) / np.sum(target ** 2))


def reconstruction_error(phi, psi, m) -> float:
  """||M - Phi Psi^T||_F / ||M||_F."""
  phi, psi, m = (np.asarray(x, np.float64) for x in (phi, psi, m))
  return float(np.linalg.norm(m - phi @ psi.T) / np.linalg.norm(m))


def init_encoder(rng, kind: str, rank: int, num_states: int = 0, obs_dim: int = 0,
                 hidden: int = 64, scale: float = 0.1):
  """Parameters {'phi': ..., 'psi': ...} of two embedding tables [num_states, rank] or two
  one-hidden-layer MLPs obs_dim -> hidden -> rank (LeCun-normal, output scaled by `scale`
  so the factors start small and balanced: products phi^T psi far below the entries of
  D P ~ 1/|S|, or unvisited states look visited until the repulsion shrinks them)."""
  k_phi, k_psi = jax.random.split(rng)
  if kind == "table":
    return {name: {"table": scale * jax.random.normal(k, (num_states, rank)) / np.sqrt(rank)}
            for name, k in (("phi", k_phi), ("psi", k_psi))}
  if kind == "mlp":
    def mlp(k):
      k1, k2 = jax.random.split(k)
      return {"w1": jax.random.normal(k1, (obs_dim, hidden)) / np.sqrt(obs_dim),
              "b1": jnp.zeros(hidden),
              "w2": scale * jax.random.normal(k2, (hidden, rank)) / np.sqrt(hidden)}
    return {"phi": mlp(k_phi), "psi": mlp(k_psi)}
  raise ValueError(f"encoder {kind!r} is not one of {ENCODERS}")


def encode(params, inputs):
  """The embedding of `inputs` under one factor's parameters: state indices [B] for a table,
  observations [B, obs_dim] for an MLP."""
  if "table" in params:
    return params["table"][inputs]
  h = jax.nn.relu(inputs @ params["w1"] + params["b1"])
  return h @ params["w2"]


def loss_on_batch(params, batch, negative_weight, observe=None):
  """`spectral_loss` of a batch {'state', 'next_state', 'anchor', 'negative'} (state indices,
  and optionally 'weight' per transition); `observe(indices)` maps indices to the MLP's
  observations (None for tables)."""
  view = (lambda x: x) if observe is None else observe
  phi, psi = params["phi"], params["psi"]
  return spectral_loss(encode(phi, view(batch["state"])), encode(psi, view(batch["next_state"])),
                       encode(phi, view(batch["anchor"])), encode(psi, view(batch["negative"])),
                       negative_weight, batch.get("weight", 1.0))
