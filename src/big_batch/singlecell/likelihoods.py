"""Count likelihoods and the Gaussian KL of scVI (Lopez et al. 2018, Methods) in JAX.

Negative binomial with mean mu and inverse dispersion theta,

    log NB(x; mu, theta) = theta (log theta - log(theta + mu)) + x (log mu - log(theta + mu))
                           + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1),

and its zero-inflated form with dropout logit pi (p_drop = sigmoid(pi)):

    log ZINB(0) = log(sigmoid(pi) + sigmoid(-pi) NB(0)),
    log ZINB(x > 0) = log sigmoid(-pi) + log NB(x),

written, as scVI and BA-scVI write them, with softplus for numerical stability.
"""
import jax
import jax.numpy as jnp

_EPS = 1e-8


def log_nb(x, mu, theta):
  """log NB(x; mu, theta) elementwise (module docstring)."""
  log_theta_mu = jnp.log(theta + mu + _EPS)
  return (theta * (jnp.log(theta + _EPS) - log_theta_mu) + x * (jnp.log(mu + _EPS) - log_theta_mu)
          + jax.lax.lgamma(x + theta) - jax.lax.lgamma(theta) - jax.lax.lgamma(x + 1.0))


def log_zinb(x, mu, theta, pi_logit):
  """log ZINB(x; mu, theta, pi) elementwise, pi the dropout logit (module docstring)."""
  log_nb_zero = theta * (jnp.log(theta + _EPS) - jnp.log(theta + mu + _EPS))
  case_zero = jax.nn.softplus(log_nb_zero - pi_logit) - jax.nn.softplus(-pi_logit)
  case_non_zero = log_nb(x, mu, theta) - jax.nn.softplus(pi_logit)  # + log sigmoid(-pi)
  return jnp.where(x < _EPS, case_zero, case_non_zero)


def kl_normal(mean, var, prior_mean=0.0, prior_var=1.0):
  """KL(N(mean, var) || N(prior_mean, prior_var)) elementwise:
  (log(prior_var / var) + (var + (mean - prior_mean)^2) / prior_var - 1) / 2."""
  return 0.5 * (jnp.log(prior_var) - jnp.log(var) + (var + (mean - prior_mean) ** 2) / prior_var
                - 1.0)
