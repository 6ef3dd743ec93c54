"""Pseudo-counts from an SVD representation, and count bonuses (Chandak et al., ICML 2023,
arXiv 2305.00654, Sec. 4 "pseudo-counts for free"; Strehl & Littman 2008's beta / sqrt(n)).

With phi(s)^T psi(s') ~ [D P^pi]_{s s'} (svd_representation.py), the reconstructed row of s
has norm ||Phi Psi^T [s]|| = sqrt(phi(s)^T G phi(s)), G = Psi^T Psi = sum_s psi(s) psi(s)^T,
and ~ d(s) ||P[s]||_2, with ||P[s]||_2 in [1/sqrt(A), 1] for A actions. So

    n^(s) = N sqrt(phi(s)^T G phi(s))     (N transitions in the buffer)

estimates the visitation count up to that factor, is invariant to the k x k ambiguity
(Phi R, Psi R^{-T}) of the factorisation, and needs only G, estimated from the negatives:
G ~ E_{u ~ rho}[psi(u) psi(u)^T / rho(u)] (|S| times the mean for uniform rho).
"""
import jax.numpy as jnp


def psi_gram(psi_negative, inverse_density):
  """G = sum_s psi(s) psi(s)^T estimated from negatives u ~ rho: mean of psi psi^T / rho(u)."""
  return inverse_density * psi_negative.T @ psi_negative / psi_negative.shape[0]


def visitation(phi, gram):
  """sqrt(phi(s)^T G phi(s)) ~ d(s) ||P[s]||: the norm of the reconstructed row of D P."""
  return jnp.sqrt(jnp.maximum(jnp.einsum("bi,ij,bj->b", phi, gram, phi), 0.0))


def pseudo_counts(phi, gram, num_transitions):
  """n^(s) = N sqrt(phi(s)^T G phi(s)) (module docstring)."""
  return num_transitions * visitation(phi, gram)


def count_bonus(counts, beta):
  """The intrinsic reward beta / sqrt(n + 1) (n a true or pseudo-count)."""
  return beta / jnp.sqrt(counts + 1.0)
