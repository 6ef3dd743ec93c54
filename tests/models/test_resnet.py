"""The CIFAR-style ResNets against the papers' parameter counts, a numpy 1-D block, the 2-D net
on a one-column image, and the option-A shortcut."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from big_batch import models
from big_batch.models.resnet import BasicBlock, ResNet


def param_count(depth, input_shape, **kwargs):
  model = nnx.eval_shape(lambda: ResNet(input_shape, 10, depth=depth, rngs=nnx.Rngs(0),
                                        **kwargs))
  return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("depth, millions", [(32, 0.46), (56, 0.85)])
def test_cifar_resnets_have_the_papers_parameter_counts(depth, millions):
  """He et al. 2016, Table 6 (option A shortcuts, 10 classes)."""
  assert round(param_count(depth, (32, 32, 3)) / 1e6, 2) == millions


def test_resnet20_and_resnet18_counts_written_out():
  # ResNet-20: stem 3*3*3*16 + BN; stage s of 3 blocks, two 3x3 convs + BN each, channels
  # 16 * 2^s (the first conv of stages 2, 3 reads half as many); head 64 * 10 + 10.
  conv = lambda i, o: 9 * i * o + 2 * o
  stages = sum(conv(c_in, c) + conv(c, c) + 2 * (conv(c, c) + conv(c, c))
               for c_in, c in ((16, 16), (16, 32), (32, 64)))
  assert param_count(20, (32, 32, 3)) == conv(3, 16) + stages + 650 == 269722
  # ResNet-18 (CIFAR variant, projection shortcuts): 11,173,962, as the PyTorch reference.
  assert param_count(18, (32, 32, 3)) == 11173962


def conv1d_by_hand(x, kernel, stride):
  """Cross-correlation with one zero of padding per side: x [L, C], kernel [3, C, O]."""
  padded = np.pad(x, ((1, 1), (0, 0)))
  out_len = (len(x) + 2 - 3) // stride + 1
  return np.stack([np.einsum("kc,kco->o", padded[i * stride:i * stride + 3], kernel)
                   for i in range(out_len)])


@pytest.mark.parametrize("stride, in_channels, out_channels", [(1, 4, 4), (2, 4, 8)])
def test_a_basic_block_without_norm_matches_numpy(stride, in_channels, out_channels):
  block = BasicBlock(in_channels, out_channels, stride, 1, "pad", "none", None, 0.99,
                     nnx.Rngs(0))
  x = np.random.default_rng(0).normal(size=(2, 10, in_channels)).astype(np.float32)
  got = np.asarray(nnx.jit(lambda b, x: b(x))(block, jnp.asarray(x)))
  k1, b1 = np.asarray(block.conv1.kernel[...]), np.asarray(block.conv1.bias[...])
  k2, b2 = np.asarray(block.conv2.kernel[...]), np.asarray(block.conv2.bias[...])
  for row in range(2):
    h = np.maximum(conv1d_by_hand(x[row], k1, stride) + b1, 0)
    h = conv1d_by_hand(h, k2, 1) + b2
    shortcut = x[row, ::stride]  # Option A: subsample, zero-pad the new channels evenly.
    pad = out_channels - in_channels
    shortcut = np.pad(shortcut, ((0, 0), (pad // 2, pad - pad // 2)))
    np.testing.assert_allclose(got[row], np.maximum(h + shortcut, 0), rtol=1e-5, atol=1e-5)


def test_resnet18_uses_projection_shortcuts():
  model = nnx.eval_shape(lambda: ResNet((40,), 10, depth=18, width=4, rngs=nnx.Rngs(0)))
  projected = [b.projection is not None for b in model.blocks]
  assert projected == [False, False, True, False, True, False, True, False]


@pytest.mark.parametrize("shortcut", ["pad", "projection"])
def test_the_1d_block_is_the_2d_block_on_a_one_column_image(shortcut):
  """A 3x3 conv on an [L, 1] image with one zero of padding sees only its middle column:
  the 2-D block with the 1-D kernels there gives the 1-D block's output (BN in train mode)."""
  new = lambda ndim, seed: BasicBlock(4, 8, 2, ndim, shortcut, "batch", None, 0.99,
                                      nnx.Rngs(seed))
  one, two = new(1, 0), new(2, 1)

  def put(k1, k2):
    if k1.ndim == 3:  # [3 or 1, C, O] into the middle column of [k, k, C, O].
      return k2.at[:, k2.shape[1] // 2].set(k1)
    return k1

  nnx.update(two, jax.tree.map(put, nnx.state(one, nnx.Param).to_pure_dict(),
                               nnx.state(two, nnx.Param).to_pure_dict()))
  x = jax.random.normal(jax.random.key(2), (6, 12, 4))
  forward = nnx.jit(lambda block, x: block(x))
  np.testing.assert_allclose(forward(two, x[:, :, None]), forward(one, x)[:, :, None],
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("extra", [{}, {"norm": "ghost", "ghost_batch_size": 2},
                                   {"norm": "none"}])
def test_registered_resnet_builds_from_a_config(extra):
  config = ml_collections.ConfigDict({"name": "resnet", "depth": 20, "width": 4, **extra})
  model = nnx.eval_shape(lambda: models.build(config, (40,), 10, nnx.Rngs(0)))
  assert nnx.eval_shape(lambda m, x: m(x), model, jnp.ones((4, 40))).shape == (4, 10)


def test_an_unknown_depth_is_a_clear_error():
  with pytest.raises(ValueError, match=r"ResNet depth=19 is not one of \[18, 20, 32"):
    ResNet((40,), 10, depth=19, rngs=nnx.Rngs(0))
