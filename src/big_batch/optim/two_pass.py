"""LAMB's and optax-LARS's update in two passes over each leaf, with no direction-sized buffer.

A trust ratio needs the norm of the direction u before u can be scaled, so u feeds two
consumers: a reduction and the scaled update. Written as an optax chain (scale_by_adam ->
add_decayed_weights -> scale_by_trust_ratio), u is one value in the HLO, and XLA writes it to
a scratch buffer the size of the parameters, then reads it back twice. Here each leaf's u is
computed twice instead: once for the update, and once for the norm on copies of its inputs
taken through `jax.lax.optimization_barrier`, which XLA's common-subexpression elimination
cannot see through. Each copy then fuses into its own consumer: the norm reads m, v and w
(LARS: g and w) and the update reads them again, and nothing update-sized is written but the
outputs. The math is the chain's, to float32 rounding, and so is the state: `init` is the
chain's `init` (same NamedTuples and shapes, so checkpoints and shardings are unchanged).

What the optimized HLO and a per-kernel profile showed (jax/jaxlib 0.10.2, XLA:CPU, ResNet-50's
161 leaves, 25.6M float32 parameters; `jax.jit(step).lower(...).compile().as_text()` and
`jax.profiler.trace(..., create_perfetto_trace=True)`; benchmarks/optimizer_step.py):
- XLA:CPU has no sibling multi-output fusion: m', v' and w' are three loop fusions per leaf
  (AdamW moves 10 arrays per parameter, not 7), and LAMB adds two reductions, 14 at best.
- Reductions go to YNNPACK fusions (`ynn_fusion`, vectorized, one output, one thread), which
  absorb elementwise producers. A variadic reduce computing ||w||^2 and ||u||^2 in one pass
  falls back to XLA's scalar reduce loop: several times slower than two YNN reductions.
- The chain's scratch buffer for u is the expensive part, more than its two extra array
  passes: a temporary buffer is fresh memory at every call (over glibc's mmap threshold), and
  on one 25.6M-parameter leaf, on the loaded machine, the loop fusion that first writes it
  took 346 ms where each of the other three took 50-60 ms (page faults in this VM).
- A YNN reduction whose producer uses a broadcast constant that another consumer shares
  (the same `b * x` on the update side, or on another leaf of the same shape) gets that
  broadcast materialized as a full array: barrier copies of the whole tree with literal
  hyperparameters wrote 525 MB of broadcasts. So the barrier is per leaf and carries the
  hyperparameters (bias corrections, eps, weight decay, trust coefficient) as arrays.
- Grouping leaves of equal shape into stacked arrays does not pay here: the params and
  gradients arrive as separate leaves, and `jnp.stack` of them is materialized (a copy of
  every w and g per step) rather than fused into the consumers; the per-kernel overhead it
  would save is small (the ~1500 scalar and small-leaf kernels add up to about 2 ms).
- What is left: 14 array passes per parameter against AdamW's 10 (so at most 7/14 = 50% of
  the 7-array bound), and YNN reductions on one thread where loop fusions use two. Splitting
  the kernels' norms into two half reductions, to run them on both threads, was slower
  (89 ms against 53 ms for the LAMB step). Measured on the idle machine (load average 0.7):
  LAMB 46.6 ms against optax.lamb's 103.6 ms (0.45x), optax-form LARS 25.9 ms against
  optax.lars's 124.9 ms (0.21x), AdamW 21.0 ms; `python benchmarks/optimizer_step.py`.
"""
import jax
import jax.numpy as jnp
import optax

from big_batch.optim import trust_ratio


def _copies(*values):
  """`values` through an optimization barrier: equal, but new HLO values that no CSE merges."""
  return jax.lax.optimization_barrier(values)


def _adam_direction(m, v, w, bc1, bc2, eps, weight_decay):
  """m_hat / (sqrt(v_hat) + eps) + weight_decay * w, as optax.scale_by_adam then
  add_decayed_weights compute it (bias corrections None: without bias correction)."""
  if bc1 is not None:
    m, v = m / bc1.astype(m.dtype), v / bc2.astype(v.dtype)
  u = m / (jnp.sqrt(v) + eps)
  return u if weight_decay is None else u + weight_decay * w


def lamb_update(clip, b1, b2, eps, weight_decay, weight_decay_mask, trust_ratio_mask,
                bias_correction, scale):
  """The update of `optax.chain(*clip, adam, add_decayed_weights(weight_decay,
  weight_decay_mask), scale_by_trust_ratio(mask=trust_ratio_mask), scale)` (layerwise.lamb),
  for that chain's state. `clip` is a list of at most one transformation of the gradient
  (clip_by_global_norm), `scale` the learning rate's (scale_by_learning_rate)."""

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args  # As optax.chain accepts them; none of the chain's transformations reads one.
    if params is None:
      raise ValueError(trust_ratio.NO_PARAMS)
    clip_state = []
    for tx, tx_state in zip(clip, state):
      updates, tx_state = tx.update(updates, tx_state, params)
      clip_state.append(tx_state)
    adam, decay_state, ratio_state, scale_state = state[len(clip):]
    count = optax.safe_increment(adam.count)
    mu = optax.tree.update_moment(updates, adam.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, adam.nu, b2, 2)
    bc1 = 1 - b1 ** count if bias_correction else None
    bc2 = 1 - b2 ** count if bias_correction else None
    decayed = trust_ratio.leaf_mask(weight_decay_mask, params)
    trusted = trust_ratio.leaf_mask(trust_ratio_mask, params)

    def leaf(m, v, w, decay, trust):
      u = _adam_direction(m, v, w, bc1, bc2, eps, weight_decay if decay else None)
      if not trust:
        return u
      # The same direction on barrier copies, for the norm (module docstring).
      hyper = [eps, weight_decay] + ([bc1, bc2] if bias_correction else [])
      m_, v_, w_, hyper_ = _copies(m, v, w, [jnp.asarray(x, jnp.float32) for x in hyper])
      eps_, wd_, *bcs_ = hyper_
      bc1_, bc2_ = bcs_ if bias_correction else (None, None)
      u_ = _adam_direction(m_, v_, w_, bc1_, bc2_, eps_.astype(m.dtype),
                           wd_.astype(w.dtype) if decay else None)
      w_norm, u_norm = trust_ratio.norm(w_), trust_ratio.norm(u_)
      return u * trust_ratio.ratio_of(w_norm, u_norm, w_norm, u_norm).astype(u.dtype)

    direction = jax.tree.map(leaf, mu, nu, params, decayed, trusted)
    updates, scale_state = scale.update(direction, scale_state, params)
    adam = optax.ScaleByAdamState(count, optax.tree.cast_like(mu, adam.mu),
                                  optax.tree.cast_like(nu, adam.nu))
    return updates, (*clip_state, adam, decay_state, ratio_state, scale_state)

  return update_fn


def lars_update(weight_decay, trust_coefficient, eps, weight_decay_mask, trust_ratio_mask,
                scale, momentum):
  """The update of `optax.chain(add_decayed_weights(weight_decay, weight_decay_mask),
  scale_by_trust_ratio(trust_coefficient, eps, trust_ratio_mask), scale, momentum)`
  (layerwise.lars with ratio="optax"), for that chain's state. `scale` is the learning
  rate's transformation, `momentum` the trace."""
  no_decay = isinstance(weight_decay, (int, float)) and weight_decay == 0  # optax skips it too

  def decayed_update(g, w, wd, decay):
    return g + wd * w if decay and not no_decay else g

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args  # As optax.chain accepts them; none of the chain's transformations reads one.
    if params is None:
      raise ValueError(trust_ratio.NO_PARAMS)
    decay_state, ratio_state, scale_state, momentum_state = state
    decayed = trust_ratio.leaf_mask(weight_decay_mask, params)
    trusted = trust_ratio.leaf_mask(trust_ratio_mask, params)

    def leaf(g, w, decay, trust):
      u = decayed_update(g, w, weight_decay, decay)
      if not trust:
        return u
      g_, w_, hyper_ = _copies(g, w, [jnp.asarray(x, jnp.float32)
                                      for x in (weight_decay, trust_coefficient, eps)])
      wd_, coefficient_, eps_ = hyper_
      u_ = decayed_update(g_, w_, wd_.astype(w.dtype), decay)
      w_norm, u_norm = trust_ratio.norm(w_), trust_ratio.norm(u_)
      ratio = trust_ratio.ratio_of(coefficient_ * w_norm, u_norm + eps_, w_norm, u_norm)
      return u * ratio.astype(u.dtype)

    direction = jax.tree.map(leaf, updates, params, decayed, trusted)
    updates, scale_state = scale.update(direction, scale_state, params)
    updates, momentum_state = momentum.update(updates, momentum_state, params)
    return updates, (decay_state, ratio_state, scale_state, momentum_state)

  return update_fn
