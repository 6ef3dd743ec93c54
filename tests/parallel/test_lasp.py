"""LASP-1, LASP-2 and the blockwise reference against the dense masked reference."""
import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch.parallel import lasp

EXPLICIT, AUTO = jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto
# Decays per head: fast, slow, and none (λ = 1); then the all-ones case of Linear-MoE's kernel.
DECAYS = (np.array([0.5, 0.9, 0.999, 1.0]), np.ones(4))
# (mesh shape over ('data', 'seq'), axis type, chunk size): every shape, both axis types,
# chunks from 1 position to the whole shard (N = 64, so a shard holds 64/|seq| positions).
MESHES = [((1, 8), EXPLICIT, 2), ((2, 4), AUTO, 4), ((4, 2), EXPLICIT, 32), ((8, 1), AUTO, 16)]


def _inputs(dtype, batch=8, heads=4, n=64, d=8):
  keys = jax.random.split(jax.random.key(0), 4)
  q, k, v, w = (jax.random.normal(key, (batch, heads, n, d), dtype) for key in keys)
  return q / np.sqrt(d), k / np.sqrt(d), v, w


def _value_and_grads(attention, w):
  """O and d<O, w>/d(q, k, v) in one function, so each case compiles once."""
  def fn(q, k, v, decay):
    out, vjp = jax.vjp(lambda q, k, v: attention(q, k, v, decay), q, k, v)
    return out, vjp(w)
  return fn


def _max_error(got, want):
  return max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(got),
                                                              jax.tree.leaves(want)))


def _mesh(shape, axis_type=EXPLICIT):
  return jax.make_mesh(shape, ('data', 'seq'), axis_types=(axis_type, axis_type))


@pytest.mark.parametrize('chunk_size', [1, 8, 64])
def test_blockwise_matches_dense_float64(chunk_size):
  with jax.enable_x64(True):
    q, k, v, w = _inputs(jnp.float64, batch=2)
    blockwise = jax.jit(_value_and_grads(
        lambda *a: lasp.blockwise(*a, chunk_size=chunk_size), w))
    dense = jax.jit(_value_and_grads(lasp.dense, w))
    for decay in DECAYS:
      assert _max_error(blockwise(q, k, v, decay), dense(q, k, v, decay)) <= 1e-10


@pytest.mark.parametrize('impl', ['lasp1', 'lasp2'])
@pytest.mark.parametrize('shape,axis_type,chunk_size', MESHES)
def test_sequence_parallel_matches_dense_float64(impl, shape, axis_type, chunk_size):
  mesh = _mesh(shape, axis_type)
  with jax.enable_x64(True):
    q, k, v, w = _inputs(jnp.float64)
    parallel = jax.jit(_value_and_grads(
        lambda *a: lasp.linear_attention(*a, mesh=mesh, impl=impl, chunk_size=chunk_size), w))
    dense = jax.jit(_value_and_grads(lasp.dense, w))
    for decay in DECAYS:
      assert _max_error(parallel(q, k, v, decay), dense(q, k, v, decay)) <= 1e-10


@pytest.mark.parametrize('impl,shape,axis_type', [
    ('lasp2', (2, 4), EXPLICIT), ('lasp1', (4, 2), AUTO), ('blockwise', None, None)])
def test_float32_matches_dense(impl, shape, axis_type):
  mesh = _mesh(shape, axis_type) if shape else None
  q, k, v, w = _inputs(jnp.float32)
  fn = jax.jit(_value_and_grads(
      lambda *a: lasp.linear_attention(*a, mesh=mesh, impl=impl, chunk_size=8), w))
  dense = jax.jit(_value_and_grads(lasp.dense, w))
  assert _max_error(fn(q, k, v, DECAYS[0]), dense(q, k, v, DECAYS[0])) <= 1e-4


def test_mesh_from_set_mesh_and_unsharded_inputs():
  """Outside jit, with the mesh from jax.set_mesh and Explicit axes: inputs get resharded."""
  q, k, v, _ = _inputs(jnp.float32)
  with jax.set_mesh(_mesh((2, 4))):
    out = lasp.lasp2(q, k, v, DECAYS[0])
    assert jax.typeof(out).sharding.spec == jax.P('data', None, 'seq', None)
  assert _max_error(out, lasp.dense(q, k, v, DECAYS[0])) <= 1e-4


def _grad_collectives(impl, mesh, n, chunk_size=4):
  q, k, v, w = _inputs(jnp.float32, batch=4, heads=2, n=n)
  loss = lambda q, k, v: jnp.sum(w * lasp.linear_attention(
      q, k, v, DECAYS[0][:2], mesh=mesh, impl=impl, chunk_size=chunk_size))
  hlo = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, v).compile().as_text()
  return lasp.hlo_collectives(hlo)


def test_lasp1_hlo_has_only_collective_permutes():
  """LASP-1: W−1 serial hops forward and W−1 backward (the inverse permutation)."""
  collectives = _grad_collectives('lasp1', _mesh((2, 4)), n=128)
  assert collections.Counter(c.op for c in collectives) == {'collective-permute': 2 * 3}


def test_lasp2_hlo_has_one_all_gather_and_one_reduce_scatter():
  """LASP-2: one all-gather of the states (forward), its transpose a reduce-scatter (backward).

  XLA:CPU keeps the reduce-scatter (no all-reduce + dynamic-slice rewrite), so both
  are asserted as such. No all-gather carries the sequence dimension (N = 128 matches
  no other dimension here), i.e. nothing gathers K, V or activations.
  """
  collectives = _grad_collectives('lasp2', _mesh((2, 4)), n=128)
  assert collections.Counter(c.op for c in collectives) == {'all-gather': 1, 'reduce-scatter': 1}
  for collective in collectives:
    assert all(128 not in dims and 32 not in dims for _, dims in collective.shapes)


@pytest.mark.parametrize('impl', ['lasp1', 'lasp2'])
def test_communication_bytes_do_not_grow_with_sequence_length(impl):
  """Per device and layer: B/|data|·h·d_h² floats per hop (LASP-1) or per all-gather
  operand (LASP-2), at N and 2N."""
  mesh = _mesh((2, 4))
  state_bytes = (4 // 2) * 2 * 8 * 8 * 4
  expected = {'lasp1': 2 * 3 * state_bytes, 'lasp2': state_bytes + 4 * state_bytes}[impl]
  for n in (64, 128):
    assert sum(c.operand_bytes for c in _grad_collectives(impl, mesh, n)) == expected


def test_hlo_collectives_parses_operand_bytes_and_groups():
  hlo = '\n'.join([
      '  %all-gather.1 = f32[4,2,8,8]{3,2,1,0} all-gather(%p), channel_id=1, '
      'replica_groups={{0,1,2,3},{4,5,6,7}}, dimensions={0}',
      '  %rs = bf16[1,8]{1,0} reduce-scatter(%x), replica_groups=[4,2]<=[8], dimensions={0}',
      '  ROOT %cp = f64[3]{0} collective-permute(%y), source_target_pairs={{0,1}}',
      '  %add = f32[4]{0} add(%a, %b)',
  ])
  assert lasp.hlo_collectives(hlo) == [
      lasp.Collective('all-gather', (('f32', (4, 2, 8, 8)),), 4 * 2 * 8 * 8, 4),
      lasp.Collective('reduce-scatter', (('bf16', (1, 8)),), 2 * 8 * 2, 2),
      lasp.Collective('collective-permute', (('f64', (3,)),), 24, 1),
  ]


def test_shard_sequence_lays_out_batch_and_sequence():
  tokens = jnp.zeros((4, 16), jnp.int32)
  with jax.set_mesh(_mesh((2, 4))):
    assert jax.typeof(lasp.shard_sequence(tokens)).sharding.spec == jax.P('data', 'seq')
  auto = jax.jit(lambda t: lasp.shard_sequence(t, mesh=_mesh((2, 4), AUTO)))(tokens)
  assert auto.sharding.spec == jax.P('data', 'seq')


@pytest.mark.parametrize('n,chunk_size', [(60, None), (64, 3), (64, 16)])
def test_rejects_sequence_not_divisible_by_shards_times_chunk(n, chunk_size):
  q, k, v, _ = _inputs(jnp.float32, n=n)
  with pytest.raises(ValueError, match="not divisible by the 8 shard.*'seq'"):
    lasp.lasp2(q, k, v, DECAYS[0], mesh=_mesh((1, 8)), chunk_size=chunk_size)


def test_blockwise_rejects_sequence_not_divisible_by_chunk():
  q, k, v, _ = _inputs(jnp.float32, batch=1)
  with pytest.raises(ValueError, match='sequence length 64 is not divisible by chunk_size=5'):
    lasp.blockwise(q, k, v, DECAYS[0], chunk_size=5)


def test_rejects_mesh_without_seq_axis():
  q, k, v, _ = _inputs(jnp.float32)
  with pytest.raises(ValueError, match="axis named 'seq'"):
    lasp.lasp1(q, k, v, DECAYS[0], mesh=jax.make_mesh((8,), ('data',)))
  with pytest.raises(ValueError, match='jax.set_mesh'):
    lasp.lasp2(q, k, v, DECAYS[0])


@pytest.mark.parametrize('decay', [0.0, -0.5, 1.5, np.nan])
def test_rejects_decay_outside_unit_interval(decay):
  q, k, v, _ = _inputs(jnp.float32, batch=1)
  with pytest.raises(ValueError, match=r'decay must lie in \(0, 1\]'):
    lasp.blockwise(q, k, v, np.array([0.5, 0.5, decay, 1.0]))


def test_rejects_unknown_impl():
  q, k, v, _ = _inputs(jnp.float32, batch=1)
  with pytest.raises(ValueError, match="impl='ring'"):
    lasp.linear_attention(q, k, v, DECAYS[0], impl='ring')
