"""The BA-scVI task's steps: the adversarial term's encoder gradient is the discriminator
objective's, reversed and scaled by lambda_D w_D; with weight 0 the VAE trains exactly as
scVI's; the discriminator waits for its warm-up; configs with bad values are refused."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from big_batch import configs
from big_batch.checks import ConfigError
from big_batch.data.datasets import Dataset, Split
from big_batch.singlecell import simulate
from big_batch.singlecell import task as ba_scvi
from big_batch.train.validate import validate


def tiny_data():
  arrays = simulate.simulate(0, num_cells=96, num_genes=16, num_cell_types=3, num_studies=3,
                             strength=2.0, markers_per_type=4)
  split = Split(96, lambda idx: {k: v[np.asarray(idx)] for k, v in arrays.items()})
  return Dataset(splits={"train": split}, num_classes=None, input_shape=None), arrays


def tiny_config(weight=10.0, taps=("encoder", "decoder"), warmup=0):
  config = configs.get("singlecell_ba_scvi", "quick")
  config.model = dict(hidden=8, latent=3, num_layers=1, dropout=0.1)
  config.adversary.weight, config.adversary.taps = weight, taps
  config.adversary.warmup_steps = warmup
  config.batch.size = 32
  config.evals = {}
  return config


def batch_of(arrays, rows=32):
  return {k: jnp.asarray(v[:rows]) for k, v in arrays.items()}


def build(config, data):
  return ba_scvi.build(config, data, None, total_steps=10)


def encoder_leaves(tree):
  return jax.tree.leaves(tree["encoder"])


def test_adversarial_gradient_on_the_encoder_is_the_discriminators_reversed():
  data, arrays = tiny_data()
  config = tiny_config(weight=10.0)
  task = build(config, data)
  state = task.init(jax.random.key(0))
  losses = ba_scvi.Losses(config, 16, 3, ba_scvi.library_prior(
      arrays["counts"], arrays["study"], 3))
  no_adversary = ba_scvi.Losses(tiny_config(weight=0.0), 16, 3, losses.prior)
  batch, key, w_kl, w_d = batch_of(arrays), jax.random.key(5), 0.3, 0.7

  @jax.jit
  def gradients(params):
    grad_of = lambda l: jax.grad(lambda p: l.generator(
        p, state["disc_params"], batch, key, w_kl, w_d)[0])(params)
    # The discriminator objective on the same forward draw (same key).
    objective = jax.grad(lambda p: losses.discriminator(state["disc_params"], p, batch,
                                                        key)[0])(params)
    return jax.tree.map(lambda a, b: a - b, grad_of(losses), grad_of(no_adversary)), objective

  adversarial, objective = gradients(state["params"])
  for adv, disc in zip(encoder_leaves(adversarial), encoder_leaves(objective)):
    np.testing.assert_allclose(adv, -10.0 * w_d * disc, rtol=2e-3, atol=1e-5)
  flat = lambda t: np.concatenate([np.ravel(x) for x in encoder_leaves(t)])
  cosine = flat(adversarial) @ flat(objective) / (
      np.linalg.norm(flat(adversarial)) * np.linalg.norm(flat(objective)))
  assert np.linalg.norm(flat(objective)) > 0 and cosine == pytest.approx(-1.0, abs=1e-4)


def train(config, data, arrays, steps=3):
  task = build(config, data)
  state = task.init(jax.random.key(config.seed))
  step = jax.jit(task.train_step)
  for i in range(steps):
    rows = np.arange(i * 32, (i + 1) * 32) % 96
    state, metrics = step(state, {k: jnp.asarray(v[rows]) for k, v in arrays.items()})
  return {"initial": task.init(jax.random.key(config.seed)), "state": state,
          "metrics": metrics, "step": step}


@pytest.fixture(scope="module")
def runs():
  """Three steps each of scVI, weight 0, and weight 10 with a long warm-up (w_D < 0.01)."""
  data, arrays = tiny_data()
  return {name: train(config, data, arrays) for name, config in {
      "scvi": tiny_config(taps=()), "zero": tiny_config(weight=0.0),
      "adversarial": tiny_config(weight=10.0, warmup=1000)}.items()}


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_weight_zero_trains_exactly_the_scvi_vae(runs):
  assert float(runs["zero"]["metrics"]["disc_loss"]) > 0  # The adversaries did run.
  for a, b in zip(jax.tree.leaves(runs["scvi"]["state"]["params"]),
                  jax.tree.leaves(runs["zero"]["state"]["params"])):
    np.testing.assert_array_equal(a, b)
  assert not leaves_equal(runs["scvi"]["state"]["params"],
                          runs["adversarial"]["state"]["params"])


def test_the_discriminator_waits_for_its_warmup_then_lowers_its_loss(runs):
  # w_D(t) < 0.01 for t < 0.04 T: with T = 1000 the first 40 steps leave it untouched.
  warming = runs["adversarial"]
  assert leaves_equal(warming["state"]["disc_params"], warming["initial"]["disc_params"])
  # Without a warm-up it trains from the first step, and its step lowers L_D.
  active = runs["zero"]
  assert not leaves_equal(active["state"]["disc_params"], active["initial"]["disc_params"])
  _, arrays = tiny_data()
  start = active["initial"]
  new, _ = active["step"](start, batch_of(arrays))
  losses = ba_scvi.Losses(tiny_config(), 16, 3, ba_scvi.library_prior(
      arrays["counts"], arrays["study"], 3))
  l_d = lambda disc: float(losses.discriminator(disc, start["params"], batch_of(arrays),
                                                None)[0])
  assert l_d(new["disc_params"]) < l_d(start["disc_params"])


@pytest.mark.parametrize("field,value,message", [
    ("adversary.taps", ("encoder", "latent"), "must be distinct names"),
    ("adversary.weight", -1.0, "adversary.weight=-1.0"),
    ("loss.likelihood", "poisson", "loss.likelihood='poisson'"),
    ("model.dropout", 1.0, "model.dropout=1.0"),
    ("evals.test.batch_size", 100, "not divisible by the 8 devices"),
])
def test_bad_config_values_are_named_before_anything_is_built(field, value, message):
  config = configs.get("singlecell_ba_scvi", "quick")
  section, key = field.rsplit(".", 1)
  node = config
  for part in section.split("."):
    node = node[part]
  node[key] = value
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    validate(config, 8)
