"""The mnist1d classifiers: shapes, the conv arithmetic, and batch-norm state in train mode."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from big_batch import models
from big_batch.models.cnn1d import CNN1D


@pytest.mark.parametrize("name, extra", [("cnn1d", {}), ("mlp", {"hidden": (32,)}),
                                         ("cnn1d", {"norm": "batch"}),
                                         ("mlp", {"norm": "ghost", "ghost_batch_size": 2})])
def test_logits_shape(name, extra):
  config = ml_collections.ConfigDict({"name": name, **extra})
  model = models.build(config, (40,), 10, nnx.Rngs(0))
  assert model(jnp.ones((4, 40))).shape == (4, 10)


def test_cnn_matches_the_mnist1d_conv_arithmetic():
  # 40 -> 19 (k5 s2 p1) -> 10 (k3 s2 p1) -> 5 (k3 s2 p1); the head sees 5 * 25 features.
  model = CNN1D((40,), 10, rngs=nnx.Rngs(0))
  assert model.head.kernel.shape == (125, 10)


def test_batch_norm_statistics_move_only_in_train_mode():
  model = CNN1D((40,), 10, norm="batch", rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (16, 40)) + 3.0
  before = np.asarray(model.norms[0].mean[...])
  model.eval()
  model(x)
  np.testing.assert_array_equal(model.norms[0].mean[...], before)
  model.train()
  model(x)
  assert not np.allclose(model.norms[0].mean[...], before)


def test_unknown_model_is_a_clear_error():
  with pytest.raises(ValueError, match="config.model.name='vit' is not one of"):
    models.build(ml_collections.ConfigDict({"name": "vit"}), (40,), 10, nnx.Rngs(0))
