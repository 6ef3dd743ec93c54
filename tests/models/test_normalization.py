"""Ghost Batch Norm against nnx.BatchNorm, per-chunk references, sequential EMA and sharding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from big_batch.models.normalization import GhostBatchNorm, norm_layer

EPS = 1e-5


def _inputs(shape, seed=0):
  """Inputs whose ghost chunks have different means and spreads, so chunking matters."""
  x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
  rows = np.arange(shape[0], dtype=np.float32).reshape((-1,) + (1,) * (len(shape) - 1))
  return jnp.asarray(x * (1 + rows / 8) + rows / 4)


def _set_affine(layer, seed=1):
  """Random scale and bias, so a test also catches a wrong affine step."""
  rng = np.random.default_rng(seed)
  features = layer.scale.shape[0]
  layer.scale[...] = jnp.asarray(rng.uniform(0.5, 2.0, features), jnp.float32)
  layer.bias[...] = jnp.asarray(rng.normal(size=features), jnp.float32)


def _chunk_bn(x, ghost, scale, bias):
  """Per-chunk batch norm written chunk by chunk with slices (the reference's own loop)."""
  chunks = []
  for start in range(0, x.shape[0], ghost):
    c = x[start:start + ghost]
    axes = tuple(range(c.ndim - 1))
    mean, var = c.mean(axes), ((c - c.mean(axes)) ** 2).mean(axes)
    chunks.append((c - mean) / jnp.sqrt(var + EPS) * scale + bias)
  return jnp.concatenate(chunks)


@pytest.mark.parametrize("shape", [(16, 4), (8, 5, 3)])
@pytest.mark.parametrize("whole_batch", ["equal_to_batch", "none"])
def test_one_ghost_batch_equals_batchnorm(shape, whole_batch):
  ghost = shape[0] if whole_batch == "equal_to_batch" else None
  bn = nnx.BatchNorm(shape[-1], momentum=0.9, rngs=nnx.Rngs(0))
  gbn = GhostBatchNorm(shape[-1], ghost_batch_size=ghost, momentum=0.9, rngs=nnx.Rngs(0))
  _set_affine(bn)
  _set_affine(gbn)
  for seed in (0, 1):  # two updates, so the second starts from non-default running stats
    x = _inputs(shape, seed)
    np.testing.assert_allclose(gbn(x), bn(x), atol=2e-5)
    np.testing.assert_allclose(gbn.mean[...], bn.mean[...], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gbn.var[...], bn.var[...], rtol=1e-5)
  bn.eval()
  gbn.eval()
  x = _inputs(shape, seed=2)
  np.testing.assert_allclose(gbn(x), bn(x), atol=2e-5)


def test_half_precision_output_dtype_matches_batchnorm():
  x = _inputs((16, 4)).astype(jnp.bfloat16)
  bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))
  gbn = GhostBatchNorm(4, rngs=nnx.Rngs(0))
  y, expected = gbn(x), bn(x)
  assert y.dtype == expected.dtype
  np.testing.assert_allclose(y, expected, atol=2e-2)


@pytest.mark.parametrize("shape", [(32, 6), (16, 3, 5)])
def test_each_ghost_batch_is_normalized(shape):
  ghost = 4
  x = _inputs(shape)
  y = np.asarray(GhostBatchNorm(shape[-1], ghost_batch_size=ghost, rngs=nnx.Rngs(0))(x))
  chunks = y.reshape(shape[0] // ghost, -1, shape[-1])
  np.testing.assert_allclose(chunks.mean(axis=1), 0.0, atol=1e-5)
  np.testing.assert_allclose(chunks.var(axis=1), 1.0, atol=1e-3)
  whole_batch = np.asarray(GhostBatchNorm(shape[-1], rngs=nnx.Rngs(0))(x))
  assert np.abs(whole_batch.reshape(chunks.shape).mean(axis=1)).max() > 0.5


def test_running_stats_equal_sequential_ema_steps():
  shape, ghost, momentum = (24, 2, 3), 4, 0.8
  gbn = GhostBatchNorm(shape[-1], ghost_batch_size=ghost, momentum=momentum, rngs=nnx.Rngs(0))
  mean, var = np.zeros(shape[-1]), np.ones(shape[-1])
  for seed in (0, 1):
    x = np.asarray(_inputs(shape, seed), np.float64)
    gbn(jnp.asarray(x, jnp.float32))
    for start in range(0, shape[0], ghost):
      chunk = x[start:start + ghost]
      mean = momentum * mean + (1 - momentum) * chunk.mean(axis=(0, 1))
      var = momentum * var + (1 - momentum) * chunk.var(axis=(0, 1))
  np.testing.assert_allclose(gbn.mean[...], mean, rtol=1e-5)
  np.testing.assert_allclose(gbn.var[...], var, rtol=1e-5)


def test_eval_mode_normalizes_with_running_stats():
  gbn = GhostBatchNorm(3, ghost_batch_size=4, rngs=nnx.Rngs(0))
  _set_affine(gbn)
  mean, var = np.array([0.5, -1.0, 2.0], np.float32), np.array([4.0, 0.25, 1.0], np.float32)
  gbn.mean[...], gbn.var[...] = jnp.asarray(mean), jnp.asarray(var)
  gbn.eval()
  assert gbn.use_running_average
  x = np.asarray(_inputs((6, 3)))  # 6 is no multiple of 4: eval does not cut ghost batches
  scale, bias = np.asarray(gbn.scale[...]), np.asarray(gbn.bias[...])
  expected = (x - mean) / np.sqrt(var + EPS) * scale + bias
  np.testing.assert_allclose(gbn(x), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(gbn.mean[...], mean)
  np.testing.assert_array_equal(gbn.var[...], var)
  gbn.train()
  assert not gbn.use_running_average
  assert nnx.view(gbn, use_running_average=True).use_running_average


@pytest.mark.parametrize("ghost", [8, 16])
def test_sharded_forward_equals_single_device(ghost):
  """ghost=8: one ghost batch per device; ghost=16: each ghost batch spans two devices."""
  gbn = GhostBatchNorm(4, ghost_batch_size=ghost, momentum=0.9, rngs=nnx.Rngs(0))
  _set_affine(gbn)
  graphdef, state = nnx.split(gbn)

  @jax.jit
  def forward(state, x):
    model = nnx.merge(graphdef, state)
    return model(x), nnx.state(model)

  x = _inputs((64, 4))
  y_one, state_one = forward(state, jax.device_put(x, jax.devices()[0]))
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  y_sharded, state_sharded = forward(state, jax.device_put(x, NamedSharding(mesh, P("data"))))
  assert y_sharded.addressable_shards[0].data.shape == (8, 4)  # the output stays batch-sharded
  np.testing.assert_allclose(y_sharded, y_one, atol=1e-6)
  for name in ("mean", "var"):
    assert not np.allclose(state_one[name][...], state[name][...])
    np.testing.assert_allclose(state_sharded[name][...], state_one[name][...], rtol=1e-6)


def test_gradients_match_per_chunk_reference():
  ghost = 4
  x = _inputs((12, 2, 3))
  weights = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)
  gbn = GhostBatchNorm(3, ghost_batch_size=ghost, rngs=nnx.Rngs(0))
  _set_affine(gbn)
  graphdef, params, stats = nnx.split(gbn, nnx.Param, nnx.BatchStat)

  def loss(params, x):
    # copy=True: `stats` come from outside the grad trace, where the update may not write.
    return jnp.sum(nnx.merge(graphdef, params, stats, copy=True)(x) ** 2 * weights)

  def reference_loss(scale_bias, x):
    return jnp.sum(_chunk_bn(x, ghost, *scale_bias) ** 2 * weights)

  grad_params, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
  scale_bias = (params["scale"][...], params["bias"][...])
  (grad_scale, grad_bias), expected_x = jax.jit(jax.grad(reference_loss, argnums=(0, 1)))(
      scale_bias, x)
  assert np.isfinite(grad_x).all() and np.abs(grad_x).max() > 0
  np.testing.assert_allclose(grad_x, expected_x, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(grad_params["scale"][...], grad_scale, rtol=1e-4)
  np.testing.assert_allclose(grad_params["bias"][...], grad_bias, rtol=1e-4)


def test_batch_not_divisible_by_ghost_size_names_both():
  gbn = GhostBatchNorm(3, ghost_batch_size=4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"batch size 10 .*ghost_batch_size=4"):
    gbn(jnp.ones((10, 3)))
  with pytest.raises(ValueError, match="ghost_batch_size=0"):
    GhostBatchNorm(3, ghost_batch_size=0, rngs=nnx.Rngs(0))


def test_norm_layer_builds_each_kind():
  assert norm_layer("none", 3, rngs=nnx.Rngs(0)) is None
  batch = norm_layer("batch", 3, momentum=0.9, rngs=nnx.Rngs(0))
  assert type(batch) is nnx.BatchNorm and batch.momentum == 0.9
  ghost = norm_layer("ghost", 3, ghost_batch_size=8, epsilon=1e-3, rngs=nnx.Rngs(0))
  assert isinstance(ghost, GhostBatchNorm)
  assert (ghost.ghost_batch_size, ghost.epsilon) == (8, 1e-3)


def test_norm_layer_errors_name_the_values():
  with pytest.raises(ValueError, match=r"'layer'.*'batch', 'ghost', 'none'"):
    norm_layer("layer", 3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"ghost_batch_size=8 .*'batch'"):
    norm_layer("batch", 3, ghost_batch_size=8, rngs=nnx.Rngs(0))
