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
# (mesh shape over ('data', 'seq') or ('data', 'fsdp', 'seq'), axis type, chunk size): every
# shape, both axis types, chunks from 1 position to the whole shard (N = 64, so a shard holds
# 64/|seq| positions), and the batch split over fsdp too.
MESHES = [((1, 8), EXPLICIT, 2), ((2, 4), AUTO, 4), ((4, 2), EXPLICIT, 32), ((8, 1), AUTO, 16),
          ((1, 2, 4), EXPLICIT, 4), ((2, 2, 2), AUTO, 8)]


def _inputs(dtype, batch=8, heads=4, n=64, d=8):
  keys = jax.random.split(jax.random.key(0), 4)
  q, k, v, w = (jax.random.normal(key, (batch, heads, n, d), dtype) for key in keys)
  scale = float(np.sqrt(d))  # A Python float keeps the dtype (a numpy one makes bf16 float32).
  return q / scale, k / scale, v, w


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
  """Axes ('data', 'seq'), or ('data', 'fsdp', 'seq') for a 3-axis shape (the trainer's)."""
  names = ('data', 'seq') if len(shape) == 2 else ('data', 'fsdp', 'seq')
  return jax.make_mesh(shape, names, axis_types=(axis_type,) * len(shape))


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


@pytest.mark.parametrize('impl', ['dense', 'blockwise', 'lasp1', 'lasp2'])
def test_bfloat16_keeps_the_decay(impl):
  """bf16 inputs against float32 on the same values, forward and gradients, to bf16 precision.

  Decay powers taken in bf16 would turn λ = 0.999 into 1 (and 0.99 into 0.98828125): at
  N = 128 that is a 6% error where the float32 powers leave 0.2%.
  """
  mesh = _mesh((2, 4)) if impl in ('lasp1', 'lasp2') else None
  decay = np.array([0.999, 0.99, 0.9, 1.0])
  q, k, v, w = _inputs(jnp.bfloat16, batch=4, n=128)
  got = jax.jit(_value_and_grads(
      lambda *a: lasp.linear_attention(*a, mesh=mesh, impl=impl, chunk_size=8), w))(
          q, k, v, decay)
  f32 = lambda x: x.astype(jnp.float32)
  want = jax.jit(_value_and_grads(lasp.dense, f32(w)))(f32(q), f32(k), f32(v), decay)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert a.dtype == jnp.bfloat16
    assert float(jnp.max(jnp.abs(f32(a) - b))) <= 1e-2 * float(jnp.max(jnp.abs(b)))


def test_mesh_from_set_mesh_and_unsharded_inputs():
  """Outside jit, with the mesh from jax.set_mesh and Explicit axes: inputs get resharded."""
  q, k, v, _ = _inputs(jnp.float32)
  with jax.set_mesh(_mesh((2, 4))):
    out = lasp.lasp2(q, k, v, DECAYS[0])
    assert jax.typeof(out).sharding.spec == jax.P('data', None, 'seq', None)
  assert _max_error(out, lasp.dense(q, k, v, DECAYS[0])) <= 1e-4


def _grad_collectives(impl, mesh, n, chunk_size=4, in_spec=None):
  """The collectives of d<O, w>/d(q, k, v), with q, k, v laid out as `in_spec` if given."""
  q, k, v, w = _inputs(jnp.float32, batch=4, heads=2, n=n)
  if in_spec:
    q, k, v = (jax.device_put(x, jax.sharding.NamedSharding(mesh, in_spec)) for x in (q, k, v))
  loss = lambda q, k, v: jnp.sum(w * lasp.linear_attention(
      q, k, v, DECAYS[0][:2], mesh=mesh, impl=impl, chunk_size=chunk_size))
  hlo = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, v).compile().as_text()
  return lasp.hlo_collectives(hlo)


def test_lasp1_hlo_has_only_collective_permutes_of_one_pair_per_hop():
  """LASP-1: W−1 serial hops forward and W−1 backward (the inverse permutation), hop t
  sending from shard t to t+1 only, in each of the |data| = 2 rows of devices."""
  collectives = _grad_collectives('lasp1', _mesh((2, 4)), n=128)
  assert collections.Counter(c.op for c in collectives) == {'collective-permute': 2 * 3}
  forward = [{(row + hop, row + hop + 1) for row in (0, 4)} for hop in range(3)]
  expected = forward + [{(b, a) for a, b in pairs} for pairs in forward]
  assert sorted(sorted(c.pairs) for c in collectives) == sorted(sorted(p) for p in expected)


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


def _sent_bytes(collectives, device):
  """What `device` sends: its operand of each collective, of a permute only as a source."""
  return sum(c.operand_bytes for c in collectives
             if c.op != 'collective-permute' or device in {s for s, _ in c.pairs})


@pytest.mark.parametrize('impl', ['lasp1', 'lasp2'])
def test_communication_bytes_do_not_grow_with_sequence_length(impl):
  """Per device and layer, at N and 2N, with a state of B/|data|·h·d_h² floats: LASP-1
  sends at most one state forward and one backward (the paper's traffic), LASP-2 one state
  to the all-gather and W = 4 to its reduce-scatter."""
  mesh = _mesh((2, 4))
  state_bytes = (4 // 2) * 2 * 8 * 8 * 4
  expected = {'lasp1': 2 * state_bytes, 'lasp2': state_bytes + 4 * state_bytes}[impl]
  for n in (64, 128):
    collectives = _grad_collectives(impl, mesh, n)
    assert max(_sent_bytes(collectives, device) for device in range(8)) == expected


@pytest.mark.parametrize('impl', ['lasp1', 'lasp2'])
@pytest.mark.parametrize('axis_type', [EXPLICIT, AUTO])
def test_batch_sharded_over_fsdp_stays_split(impl, axis_type):
  """q, k, v with the batch over ('data', 'fsdp') as the trainer lays it out (and the
  sequence over `seq`, as the model's `shard_sequence` does): LASP keeps the batch split
  there, so only its own collectives run (over `seq`, one state per group of
  |data|·|fsdp| = 4), and no all-gather of q, k or v over fsdp."""
  mesh = _mesh((2, 2, 2), axis_type)
  collectives = _grad_collectives(impl, mesh, n=128,
                                  in_spec=jax.P(('data', 'fsdp'), None, 'seq', None))
  expected = {'lasp1': {'collective-permute': 2},
              'lasp2': {'all-gather': 1, 'reduce-scatter': 1}}[impl]
  assert collections.Counter(c.op for c in collectives) == expected
  state_elements = (4 // 4) * 2 * 8 * 8  # B/(|data|·|fsdp|)·h·d_h²
  for collective in collectives:  # Each moves a state, or the W = 2 states gathered.
    assert all(np.prod(dims) <= 2 * state_elements for _, dims in collective.shapes)
    assert len(collective.pairs) == (4 if collective.op == 'collective-permute' else 0)


def test_hlo_collectives_parses_operand_bytes_and_groups():
  hlo = '\n'.join([
      '  %all-gather.1 = f32[4,2,8,8]{3,2,1,0} all-gather(%p), channel_id=1, '
      'replica_groups={{0,1,2,3},{4,5,6,7}}, dimensions={0}',
      '  %rs = bf16[1,8]{1,0} reduce-scatter(%x), replica_groups=[4,2]<=[8], dimensions={0}',
      '  ROOT %cp = f64[3]{0} collective-permute(%y), channel_id=2, '
      'source_target_pairs={{0,1},{4,5}}, metadata={op_name="ppermute"}',
      '  %add = f32[4]{0} add(%a, %b)',
  ])
  assert lasp.hlo_collectives(hlo) == [
      lasp.Collective('all-gather', (('f32', (4, 2, 8, 8)),), 4 * 2 * 8 * 8, 4),
      lasp.Collective('reduce-scatter', (('bf16', (1, 8)),), 2 * 8 * 2, 2),
      lasp.Collective('collective-permute', (('f64', (3,)),), 24, 1, ((0, 1), (4, 5))),
  ]


def test_shard_sequence_lays_out_batch_and_sequence():
  tokens = jnp.zeros((4, 16), jnp.int32)
  with jax.set_mesh(_mesh((2, 4))):
    assert jax.typeof(lasp.shard_sequence(tokens)).sharding.spec == jax.P('data', 'seq')
  auto = jax.jit(lambda t: lasp.shard_sequence(t, mesh=_mesh((2, 4), AUTO)))(tokens)
  assert auto.sharding.spec == jax.P('data', 'seq')
  with jax.set_mesh(_mesh((2, 2, 2))):
    spec = jax.typeof(lasp.shard_sequence(tokens)).sharding.spec
    assert spec == jax.P(('data', 'fsdp'), 'seq')


def test_rejects_batch_not_divisible_by_the_batch_axes():
  q, k, v, _ = _inputs(jnp.float32, batch=6)
  with pytest.raises(ValueError, match=r"batch size 6 is not divisible by the 4 shards of "
                                       r"mesh axes \('data', 'fsdp'\)"):
    lasp.lasp2(q, k, v, DECAYS[0], mesh=_mesh((2, 2, 2)))


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
