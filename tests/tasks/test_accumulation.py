"""Gradient accumulation against the unsplit batch: gradients, updates, BN statistics, memory;
and the trainer's issue-5 features: config checks, batch-size lr scaling, ||w_t - w_0|| logs.

What equality holds (B rows, k micro-batches, D batch devices, m = B/(Dk) rows per device
and micro-batch):
- models whose rows do not interact (no BN), and Ghost BN with ghost size g dividing m: the
  accumulated gradient equals the unsplit one, for any D (the ghost batches are the same sets
  of rows either way; the mean over micro-batches of ghost-mean losses is the mean loss);
- plain BN normalizes each micro-batch by itself, so k micro-batches of plain BN are Ghost BN
  with g = B/k on one device: gradients and running statistics equal that;
- running statistics take one EMA step per ghost batch in micro-batch order. On one device
  that is the original order (equal to the unsplit batch); on D devices it is the order of
  the rows regrouped micro-batch by micro-batch, so they equal the unsplit run on the batch
  permuted that way, and not on the batch as given.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from big_batch import models, optim, tasks, train
from big_batch.data.datasets import Dataset
from big_batch.parallel import mesh as mesh_lib
from big_batch.tasks import supervised
from big_batch.tasks.accumulation import (accumulate_gradients, batch_shards, join_micro_batches,
                                         micro_batch)
from big_batch.train.metrics import read_jsonl
from big_batch.train.validate import validate
from conftest import load_config

BATCH, FEATURES, CLASSES = 64, 12, 5
DATA = Dataset(splits={}, num_classes=CLASSES, input_shape=(FEATURES,))


def _batch(rows=BATCH, seed=0):
  rng = np.random.default_rng(seed)
  # Row-dependent offsets, so the statistics of different ghost batches differ.
  offsets = np.linspace(-2, 2, rows, dtype=np.float32)[:, None]
  return {"input": jnp.asarray(rng.normal(size=(rows, FEATURES)).astype(np.float32) + offsets),
          "label": jnp.asarray(rng.integers(0, CLASSES, rows).astype(np.int32))}


def _model_config(norm, ghost=None):
  return ml_collections.ConfigDict(dict(name="mlp", hidden=(16, 16), norm=norm,
                                        ghost_batch_size=ghost))


def _split_model(norm, ghost=None):
  model = models.build(_model_config(norm, ghost), DATA.input_shape, CLASSES, nnx.Rngs(0))
  graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
  return graphdef, params.to_pure_dict(), model_state.to_pure_dict()


def _loss_fn(graphdef):
  """The supervised task's loss: mean cross-entropy, BN state out, accuracy as aux."""
  def loss_fn(params, model_state, batch):
    model = nnx.merge(graphdef, params, model_state)
    model.train()
    logits = model(batch["input"])
    loss, correct = supervised.cross_entropy_and_accuracy(logits, batch["label"])
    return loss.mean(), (nnx.split(model, nnx.Param, ...)[2].to_pure_dict(), correct.mean())
  return loss_fn


def _assert_trees_close(got, want, rtol=2e-5, atol=1e-6):
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol), got, want)


def _accumulated(norm, ghost, steps, batch, shards=1):
  graphdef, params, model_state = _split_model(norm, ghost)
  fn = jax.jit(accumulate_gradients, static_argnums=(0, 4, 5))
  return fn(_loss_fn(graphdef), params, model_state, batch, steps, shards)


def test_micro_batch_takes_the_jth_sub_block_of_every_device_block():
  rows = {"x": jnp.arange(16)}
  # 2 devices hold rows 0-7 and 8-15; each splits its block into 4 sub-blocks of 2 rows.
  assert micro_batch(rows, 0, 4, 2)["x"].tolist() == [0, 1, 8, 9]
  assert micro_batch(rows, 3, 4, 2)["x"].tolist() == [6, 7, 14, 15]
  assert micro_batch(rows, 1, 2, 1)["x"].tolist() == list(range(8, 16))  # One device.
  two_d = micro_batch({"x": jnp.arange(32).reshape(16, 2)}, 1, 2, 4)["x"]
  np.testing.assert_array_equal(two_d[:, 0], [4, 6, 12, 14, 20, 22, 28, 30])


def test_batch_shards_reads_the_batch_axes_of_the_mesh_in_context():
  assert batch_shards() == 1
  with jax.set_mesh(mesh_lib.create(dict(data=2, fsdp=2, seq=2))):
    assert batch_shards() == 4
    assert jax.jit(lambda: jnp.asarray(batch_shards()))() == 4


@pytest.mark.parametrize("norm, ghost", [("none", None), ("ghost", 8)])
def test_accumulated_gradient_equals_the_unsplit_gradient(norm, ghost):
  batch = _batch()
  loss, (state, accuracy), grads = _accumulated(norm, ghost, 1, batch)
  for steps in (2, 4, 8):
    got_loss, (got_state, got_accuracy), got_grads = _accumulated(norm, ghost, steps, batch)
    _assert_trees_close(got_grads, grads)
    np.testing.assert_allclose(got_loss, loss, rtol=1e-6)
    np.testing.assert_allclose(got_accuracy, accuracy, rtol=1e-6)
    # One device: the ghost batches are visited in their original order.
    _assert_trees_close(got_state, state)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 1e-3  # Not vacuous.


def test_bfloat16_gradients_are_summed_in_float32():
  """Micro-batch gradients 256, 1, 1, ..., 1 (bf16): a bf16 running sum stays at 256 (its
  spacing there is 2), so the mean would be 32; summed in float32 it is 263 / 8 = 32.875."""
  def loss_fn(params, model_state, batch):
    return jnp.mean(params["w"] * batch["x"]), (model_state, jnp.zeros(()))

  x = jnp.asarray([256.0] * 4 + [1.0] * 28, jnp.float32)
  params = {"w": jnp.ones((), jnp.bfloat16)}
  _, _, grads = accumulate_gradients(loss_fn, params, {}, {"x": x}, steps=8, shards=1)
  assert grads["w"].dtype == jnp.bfloat16
  np.testing.assert_allclose(float(grads["w"]), 32.875, atol=0.125)


def test_plain_batch_norm_on_micro_batches_is_ghost_batch_norm_of_the_micro_batch_size():
  batch, steps = _batch(), 4
  _, (bn_state, _), bn_grads = _accumulated("batch", None, steps, batch)
  _, (gbn_state, _), gbn_grads = _accumulated("ghost", BATCH // steps, 1, batch)
  _assert_trees_close(bn_grads, gbn_grads)
  _assert_trees_close(bn_state, gbn_state)
  _, (_, _), whole_grads = _accumulated("batch", None, 1, batch)
  assert not np.allclose(whole_grads["layers"][0]["kernel"], bn_grads["layers"][0]["kernel"],
                         rtol=1e-3)  # Statistics of 16 rows, not 64: a different gradient.


def test_running_stats_follow_micro_batch_order_across_devices():
  """On D = 4 devices, accumulation 2, ghost 8: same gradient; running statistics equal the
  unsplit run on the rows regrouped micro-batch by micro-batch, and differ from the batch's
  own order."""
  batch, steps, shards = _batch(), 2, 4
  mesh = mesh_lib.create(dict(data=2, fsdp=2, seq=2))
  with jax.set_mesh(mesh):
    _, (state, _), grads = _accumulated("ghost", 8, steps, batch, shards=None)
  _, (unsplit_state, _), unsplit_grads = _accumulated("ghost", 8, 1, batch)
  _assert_trees_close(grads, unsplit_grads)

  regrouped = jax.tree.map(lambda *xs: jnp.concatenate(xs),
                           *[micro_batch(batch, j, steps, shards) for j in range(steps)])
  _, (regrouped_state, _), _ = _accumulated("ghost", 8, 1, regrouped)
  _assert_trees_close(state, regrouped_state)
  mean = lambda s: s["norms"][0]["mean"]
  assert not np.allclose(mean(state), mean(unsplit_state), rtol=1e-4)


def _task(steps, norm="ghost", ghost=8, rows=BATCH):
  config = ml_collections.ConfigDict(dict(
      task="supervised", seed=0, model=_model_config(norm, ghost).to_dict(),
      optimizer=dict(name="sgd", learning_rate=0.1, momentum=0.9),
      batch=dict(size=rows, accumulation_steps=steps)))
  return tasks.build(config, DATA, mesh=None, total_steps=10)


def test_train_step_with_accumulation_makes_the_unsplit_update():
  batches = [_batch(seed=s) for s in (1, 2)]
  results = {}
  for steps in (1, 2, 4, 8):
    task = _task(steps)
    state, step = task.init(jax.random.key(0)), jax.jit(task.train_step)
    for batch in batches:  # Two updates: the second uses the momentum of the first.
      state, metrics = step(state, batch)
    results[steps] = (state, metrics)
  state, metrics = results[1]
  assert int(state["step"]) == 2
  for steps in (2, 4, 8):
    got_state, got_metrics = results[steps]
    assert int(got_state["step"]) == 2  # One update per global batch, not per micro-batch.
    _assert_trees_close(got_state["params"], state["params"])
    _assert_trees_close(got_state["opt_state"], state["opt_state"])
    _assert_trees_close(got_state["model_state"], state["model_state"])
    for key in ("loss", "accuracy", "grad_norm", "update_norm"):
      np.testing.assert_allclose(got_metrics[key], metrics[key], rtol=1e-5)


def test_peak_memory_is_that_of_one_micro_batch():
  """Compiled temp memory: B = 8m in 8 micro-batches stays near B = m; unsplit it grows."""
  def temp_bytes(rows, steps):
    task = _task(steps, norm="none", ghost=None, rows=rows)
    state = jax.eval_shape(task.init, jax.random.key(0))
    batch = jax.eval_shape(lambda: _batch(rows))
    return jax.jit(task.train_step).lower(state, batch).compile().memory_analysis()\
        .temp_size_in_bytes

  micro = 512
  one, accumulated, unsplit = (temp_bytes(micro, 1), temp_bytes(8 * micro, 8),
                               temp_bytes(8 * micro, 1))
  assert accumulated < 1.5 * one, (one, accumulated)
  assert unsplit > 4 * one, (one, unsplit)


# --- The trainer: config checks, learning-rate scaling, accumulation and ||w_t - w_0|| -------

@pytest.mark.parametrize("changes, match", [
    (dict(size=100), r"config.batch.size=100 is not divisible by the 8 devices of the batch axes "
                     r"\('data', 'fsdp'\): use a multiple of 8"),
    (dict(size=128, accumulation_steps=32),
     r"config.batch.size=128 is not divisible by the 8 devices of the batch axes \('data', "
     r"'fsdp'\) times 32 micro-batches .*use a multiple of 256"),
    (dict(size=128, accumulation_steps=4, ghost=8),
     r"config.model.ghost_batch_size=8 does not divide each device's micro-batch \(128 / \(8 "
     r"devices x 4 micro-batches\)\) = 4 rows"),
    (dict(size=128, ghost=48), r"ghost_batch_size=48 does not divide the global batch = 128 rows"),
    (dict(size=128, max_micro_batch=3),
     r"config.batch.size=128 is not divisible .* times 6 micro-batches"),
    (dict(accumulation_steps=0), r"config.batch.accumulation_steps=0 must be a positive integer"),
    (dict(lr_scaling="cube"), r"config.batch.lr_scaling='cube' is not one of"),
    (dict(mesh=dict(data=4, fsdp=1, seq=1)), r"has 4 devices but 8 are available"),
])
def test_validate_names_the_field_and_value(quick_config, changes, match):
  changes = dict(changes)
  if "ghost" in changes:
    quick_config.model.norm, quick_config.model.ghost_batch_size = "ghost", changes.pop("ghost")
  if "mesh" in changes:
    quick_config.mesh = changes.pop("mesh")
  quick_config.batch.update(changes)
  with pytest.raises(ValueError, match=match):
    validate(quick_config, 8)


def test_ghost_batches_may_span_devices_without_accumulation(quick_config):
  """k = 1: a ghost batch of 32 rows spans two devices' 16 rows each, which Ghost BN allows
  (ghost batches are cut from the global batch); it must only divide the batch."""
  quick_config.model.norm, quick_config.model.ghost_batch_size = "ghost", 32
  quick_config.batch.update(dict(size=128, accumulation_steps=1))
  validate(quick_config, 8)


def test_validate_accepts_ghost_batches_that_divide_the_micro_batch(quick_config):
  quick_config.model.norm, quick_config.model.ghost_batch_size = "ghost", 4
  quick_config.batch.update(dict(size=128, accumulation_steps=4))
  validate(quick_config, 8)


@pytest.mark.parametrize("rule, expected", [("none", 0.01), ("linear", 0.04), ("sqrt", 0.02)])
def test_peak_learning_rate_is_scaled_and_the_config_left_as_given(quick_config, rule, expected):
  quick_config.batch.update(dict(size=512, base_size=128, lr_scaling=rule))
  quick_config.lock()
  built = optim.build(quick_config.optimizer, 100, batch=quick_config.batch)
  assert float(built.learning_rate(quick_config.optimizer.warmup_steps)) == pytest.approx(
      expected)
  assert quick_config.optimizer.learning_rate == 0.01


def test_ghost_bn_recipe_trains_with_accumulation_and_logs_the_weight_distance(data_dir,
                                                                                tmp_path):
  """configs/mnist1d_ghost_bn.py:quick (batch 1024, sqrt lr from 128, Ghost BN) in 2
  micro-batches of 64 rows per device, ghost batches of 32."""
  config = load_config("mnist1d_ghost_bn", "quick")
  config.data.data_dir = data_dir
  config.num_steps, config.log_every, config.checkpoint_every = 20, 5, 20
  config.evals.test.every, config.evals.weight_distance.every = 20, 5
  config.optimizer.schedule = "constant"
  config.batch.accumulation_steps = 2
  config.model.ghost_batch_size = 32
  summary = train.run(config, str(tmp_path))
  assert summary["final_step"] == 20
  records = read_jsonl(str(tmp_path / "metrics.jsonl"))
  train_records = [r for r in records if "train/loss" in r]
  assert [r["step"] for r in train_records] == [5, 10, 15, 20]
  lr = 0.1 * np.sqrt(1024 / 128)
  assert all(r["train/learning_rate"] == pytest.approx(lr) for r in train_records)
  assert train_records[-1]["train/loss"] < train_records[0]["train/loss"]
  distance_records = [r for r in records if "weight_distance/distance" in r]
  assert [r["step"] for r in distance_records] == [5, 10, 15, 20]
  distances = [r["weight_distance/distance"] for r in distance_records]
  assert 0 < distances[0] < distances[1] < distances[2] < distances[3], distances
  per_leaf = {k: v for k, v in distance_records[-1].items()
              if k.startswith("weight_distance/distance/")}
  assert "weight_distance/distance/convs/0/kernel" in per_leaf
  assert "weight_distance/distance/norms/2/scale" in per_leaf
  np.testing.assert_allclose(np.sqrt(sum(v**2 for v in per_leaf.values())), distances[-1],
                             rtol=1e-5)
  assert summary["evals"]["weight_distance"]["distance"] == pytest.approx(distances[-1])


@pytest.mark.parametrize("steps, shards", [(1, 1), (4, 1), (2, 4), (3, 2)])
def test_joining_the_micro_batches_gives_the_batch_back_in_row_order(steps, shards):
  rows = 2 * steps * shards
  batch = {"input": np.arange(rows * 3).reshape(rows, 3), "label": np.arange(rows)}
  stacked = jax.tree.map(lambda *parts: np.stack(parts),
                         *[micro_batch(batch, j, steps, shards) for j in range(steps)])
  joined = join_micro_batches(stacked, steps, shards)
  jax.tree.map(np.testing.assert_array_equal, joined, batch)
