"""The linear-attention LM: sequence-parallel runs equal the dense single-device run."""
import collections

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from big_batch.models import linear_attention_lm as lm
from big_batch.parallel import lasp

BATCH, SEQ = 4, 64


def _model(sequence_parallel, tie_embeddings=True):
  return lm.LinearAttentionLM(dim=32, depth=2, heads=4, tie_embeddings=tie_embeddings,
                              sequence_parallel=sequence_parallel, chunk_size=4,
                              rngs=nnx.Rngs(0))


def _batch():
  tokens, targets = (jax.random.randint(jax.random.key(i), (BATCH, SEQ), 0, 256)
                     for i in (1, 2))
  return tokens, targets


def _loss(graphdef, state, tokens, targets):
  """A trainer's pure step: merge the split module inside the jitted function."""
  logits = nnx.merge(graphdef, state)(tokens)
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean(), logits


_loss_and_grad = jax.jit(jax.value_and_grad(_loss, argnums=1, has_aux=True), static_argnums=0)


def _max_error(got, want):
  return max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(got),
                                                              jax.tree.leaves(want)))


@pytest.fixture(scope='module')
def dense_run():
  """Logits and parameter gradients of the 'dense' model on one device, no mesh."""
  graphdef, state = nnx.split(_model('dense'))
  (_, logits), grads = _loss_and_grad(graphdef, state, *_batch())
  return state, logits, grads


@pytest.mark.parametrize('sequence_parallel,shape,axis_type', [
    ('lasp2', (2, 4), jax.sharding.AxisType.Explicit),
    ('lasp1', (4, 2), jax.sharding.AxisType.Auto),
    ('lasp2', (1, 2, 4), jax.sharding.AxisType.Auto),  # the trainer's mesh, with fsdp = 2
])
def test_sequence_parallel_lm_matches_dense(dense_run, sequence_parallel, shape, axis_type):
  """Same logits and parameter gradients; the only attention collectives are LASP's.

  The batch comes in over the mesh's batch axes, ('data', 'fsdp') on the trainer's mesh,
  and stays split over both: nothing gathers the tokens or activations over fsdp.
  """
  state, logits, grads = dense_run
  graphdef, parallel_state = nnx.split(_model(sequence_parallel))
  assert _max_error(parallel_state, state) == 0  # the implementation choice is static
  names = ('data', 'seq') if len(shape) == 2 else ('data', 'fsdp', 'seq')
  mesh = jax.make_mesh(shape, names, axis_types=(axis_type,) * len(shape))
  with jax.set_mesh(mesh):
    batch_axes = tuple(a for a in names if a != 'seq')
    tokens, targets = (jax.device_put(x, jax.P(batch_axes, None)) for x in _batch())
    state = jax.device_put(state, jax.P())
    compiled = _loss_and_grad.lower(graphdef, state, tokens, targets).compile()
    (_, parallel_logits), parallel_grads = compiled(state, tokens, targets)
  assert _max_error(parallel_logits, logits) <= 1e-4
  assert _max_error(parallel_grads, grads) <= 1e-4

  collectives = lasp.hlo_collectives(compiled.as_text())
  depth, seq_shards = 2, shape[-1]
  counts = collections.Counter(c.op for c in collectives)
  if sequence_parallel == 'lasp2':
    assert counts['all-gather'] == counts['reduce-scatter'] == depth
  else:
    assert counts['collective-permute'] == 2 * (seq_shards - 1) * depth
    assert counts['all-gather'] == counts['reduce-scatter'] == 0
  # The all-reduces sum parameter gradients (and the loss) over the devices; none
  # carries activations, and nothing gathers the sequence.
  param_shapes = {x.shape for x in jax.tree.leaves(state)} | {()}
  for collective in collectives:
    if collective.op == 'all-reduce':
      assert {dims for _, dims in collective.shapes} <= param_shapes
    assert all(SEQ not in dims for _, dims in collective.shapes)


def test_blockwise_lm_matches_dense(dense_run):
  state, logits, grads = dense_run
  graphdef, _ = nnx.split(_model('blockwise'))
  (_, blockwise_logits), blockwise_grads = _loss_and_grad(graphdef, state, *_batch())
  assert _max_error(blockwise_logits, logits) <= 1e-4
  assert _max_error(blockwise_grads, grads) <= 1e-4


def test_untied_model_has_an_output_head():
  tied, untied = _model('dense'), _model('dense', tie_embeddings=False)
  tokens, _ = _batch()
  assert untied(tokens).shape == tied(tokens).shape == (BATCH, SEQ, 256)
  assert tied.head is None and untied.head.kernel.shape == (32, 256)


def test_alibi_slopes():
  np.testing.assert_allclose(lm.alibi_slopes(8), 2.0 ** -np.arange(1, 9))
  # Not a power of two: the slopes of 4 heads, then every other slope of 8 heads.
  np.testing.assert_allclose(lm.alibi_slopes(6), 2.0 ** -np.array([2, 4, 6, 8, 1, 3]))


def test_layer_decays_go_from_local_to_global():
  first, last = lm.layer_decays(4, 0, 3), lm.layer_decays(4, 2, 3)
  np.testing.assert_allclose(first, np.exp(-lm.alibi_slopes(4) * (1 + 1e-5)))
  np.testing.assert_allclose(last, np.exp(-lm.alibi_slopes(4) * 1e-5))
  assert np.all((0 < first) & (first < last) & (last < 1))


def test_rejects_unknown_sequence_parallel():
  with pytest.raises(ValueError, match="sequence_parallel='ring'"):
    _model('ring')
