"""MCLRec's losses (Qin et al., SIGIR 2023, Eqs. 4-13), as QinHsiu/MCLRec computes them.

With a, b [B, d] two views of the batch and s(x, y) = x . y / tau (dot similarity, `sim:
'dot'`, tau = 1 in seq.yaml), the 2B rows z = [a; b] each have one positive (the other view of
the same sequence) and 2(B - 1) negatives (every other row but itself):

  L_con(a, b) = 1/(2B) sum_r -log e^{s(z_r, z_r+)} / (e^{s(z_r, z_r+)} + sum_neg e^{s(z_r, x)})

(`info_nce` + CrossEntropyLoss: the mean over the 2B rows). From the views h1, h2 of the
encoder and z1 = w_phi1(h1), z2 = w_phi2(h2) of the augmenters:

  L_rec = -log softmax(h_n M^T)[target]      full softmax over all items (Eq. 4)
  L_cl1 = L_con(h1, h2)                       (Eq. 6; temperature tau)
  L_cl2 = L_con(h1, z2) + L_con(h2, z1) + L_con(z1, z2)   (Eq. 9; temperature 1)
  R     = 0.1 sum over the same three pairs of r(x, y),   (Eqs. 11-13, `meta_rl`)
  r(x, y) = mean_r [sigma+_r - o_min,r]_+ + mean_{r,neg} [o_max,r - sigma-_{r,neg}]_+,

with sigma+_r the positive and sigma-_r the negatives of row r (temperature 1, dot),
o_min,r = min(sigma+_r, max sigma-_r) and o_max,r = max(sigma+_r, max sigma-_r) per row
(`meta_contrast_rl`). The 0.1 is the code's; inside beta's term it makes gamma = 0.1 beta.
"""
import jax
import jax.numpy as jnp
import optax


def similarities(a, b, temperature=1.0):
  """(positives [2B], negatives [2B, 2B - 2]) of the 2B rows [a; b] (dot / temperature)."""
  z = jnp.concatenate([a, b], 0)
  n = a.shape[0]
  sim = z @ z.T / temperature
  rows = jnp.arange(2 * n)
  partner = (rows + n) % (2 * n)
  positives = sim[rows, partner]
  keep = (rows[None, :] != rows[:, None]) & (rows[None, :] != partner[:, None])
  # Every row keeps 2B - 2 columns, in column order (the code's sim[mask].reshape(N, -1)).
  order = jnp.argsort(~keep, axis=1, stable=True)[:, :2 * n - 2]
  return positives, jnp.take_along_axis(sim, order, axis=1)


def nt_xent(a, b, temperature=1.0):
  """L_con(a, b): the mean over the 2B rows of the cross-entropy of the positive."""
  positives, negatives = similarities(a, b, temperature)
  logits = jnp.concatenate([positives[:, None], negatives], 1)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.zeros(logits.shape[0], jnp.int32)).mean()


def contrastive_regularizer(a, b):
  """r(a, b) of Eqs. 11-13 with per-row margins (module docstring; temperature 1)."""
  positives, negatives = similarities(a, b)
  hardest = negatives.max(1)
  o_min, o_max = jnp.minimum(positives, hardest), jnp.maximum(positives, hardest)
  return (jax.nn.relu(positives - o_min).mean()
          + jax.nn.relu(o_max[:, None] - negatives).mean())


def cl1(h1, h2, temperature=1.0):
  """L_cl1 = L_con(h1, h2)."""
  return nt_xent(h1, h2, temperature)


def cl2(h1, h2, z1, z2):
  """L_cl2 = L_con(h1, z2) + L_con(h2, z1) + L_con(z1, z2), temperature 1."""
  return nt_xent(h1, z2) + nt_xent(h2, z1) + nt_xent(z1, z2)


def regularizer(h1, h2, z1, z2):
  """R = 0.1 (r(h1, z2) + r(h2, z1) + r(z1, z2))."""
  return 0.1 * (contrastive_regularizer(h1, z2) + contrastive_regularizer(h2, z1)
                + contrastive_regularizer(z1, z2))


def recommendation(scores, targets):
  """L_rec: the full-softmax cross-entropy of the targets, per example [B]."""
  return optax.softmax_cross_entropy_with_integer_labels(scores.astype(jnp.float32), targets)
