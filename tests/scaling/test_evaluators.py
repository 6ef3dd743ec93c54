"""The 'hessian' and 'noise_scale' evaluators of a one-model task, against a hand-written MLP
on the same sampled rows, over 8 devices; and their config checks."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from big_batch.checks import ConfigError
from big_batch.data.datasets import Dataset, Split
from big_batch.parallel import mesh as mesh_lib
from big_batch.scaling import noise_scale
from big_batch.tasks import supervised
from big_batch.train.validate import validate

NUM_TRAIN = 256


def _data():
  rng = np.random.default_rng(0)
  train = {"input": rng.normal(size=(NUM_TRAIN, 5)).astype(np.float32),
           "label": rng.integers(0, 3, NUM_TRAIN).astype(np.int32)}
  split = Split(NUM_TRAIN, lambda idx: {k: v[idx] for k, v in train.items()})
  return Dataset(splits={"train": split}, num_classes=3, input_shape=(5,)), train


@pytest.fixture(scope="module")
def task_and_state():
  config = ml_collections.ConfigDict({
      "seed": 3,
      "model": {"name": "mlp", "hidden": (6,), "norm": "none"},
      "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.0},
      "batch": {"size": 16, "accumulation_steps": 1},
      "evals": {"curvature": {"kind": "hessian", "every": 1, "batch_size": 64, "order": 30},
                "noise": {"kind": "noise_scale", "every": 1, "batch_size": 64,
                          "small_batch_size": 16, "num_batches": 3}},
  })
  data, train = _data()
  mesh = mesh_lib.create(dict(data=8))
  task = supervised.build(config, data, mesh, total_steps=10)
  with jax.set_mesh(mesh):
    state = jax.jit(task.init)(jax.random.key(0))
    state = {**state, "step": jnp.asarray(5, jnp.int32)}
    return task, state, train, mesh


def _mean_loss(params, x, y):
  """The MLP (Dense -> ReLU -> Dense) and its mean cross-entropy, written out."""
  h = jnp.maximum(x @ params["layers"][0]["kernel"] + params["layers"][0]["bias"], 0.0)
  logits = h @ params["head"]["kernel"] + params["head"]["bias"]
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))


def _rows(size, count=1):
  """The rows the evaluators sample at step 5 with seed 3 (documented: rng((seed, step)))."""
  rng = np.random.default_rng((3, 5))
  return np.stack([rng.choice(NUM_TRAIN, size, replace=False) for _ in range(count)])


def test_hessian_evaluator_gives_the_extreme_eigenvalues_of_the_batch_hessian(task_and_state):
  task, state, train, mesh = task_and_state
  with jax.set_mesh(mesh):
    metrics = task.evaluators["curvature"](state)
  params = jax.device_get(state["params"])
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  rows = _rows(64)[0]
  h = np.asarray(jax.hessian(lambda f: _mean_loss(unravel(f), train["input"][rows],
                                                  train["label"][rows]))(flat), np.float64)
  exact = np.linalg.eigvalsh(h)
  assert metrics["lambda_max"] == pytest.approx(exact[-1], rel=1e-4)
  assert metrics["lambda_min"] == pytest.approx(exact[0], rel=1e-3, abs=1e-5)
  assert metrics["max_sgd_lr"] == pytest.approx(2 / exact[-1], rel=1e-4)


def test_noise_scale_evaluator_uses_the_norms_of_the_parts_and_of_their_mean(task_and_state):
  task, state, train, mesh = task_and_state
  with jax.set_mesh(mesh):
    metrics = task.evaluators["noise"](state)
  params = jax.device_get(state["params"])
  grad = jax.grad(_mean_loss)
  sq = lambda tree: float(sum(np.sum(np.square(x)) for x in jax.tree.leaves(tree)))
  small, big = [], []
  for batch in _rows(64, 3).reshape(3, 4, 16):
    parts = [grad(params, train["input"][r], train["label"][r]) for r in batch]
    small += [sq(g) for g in parts]
    big.append(sq(jax.tree.map(lambda *g: sum(g) / 4, *parts)))
  expected = noise_scale.two_batch_estimate(np.mean(small), np.mean(big), 16, 64, NUM_TRAIN)
  assert metrics["grad_sq_norm"] == pytest.approx(expected.grad_sq_norm, rel=1e-4)
  assert metrics["trace_covariance"] == pytest.approx(expected.trace_covariance, rel=1e-4)
  assert metrics["b_simple"] == pytest.approx(expected.b_simple, rel=1e-4)


@pytest.mark.parametrize("fields, match", [
    (dict(kind="noise_scale", batch_size=64, small_batch_size=48),
     "small_batch_size=48 must divide"),
    (dict(kind="noise_scale", batch_size=64, small_batch_size=4),
     "small_batch_size=4 is not divisible by the 8"),
    (dict(kind="hessian", batch_size=64, order=0), "order=0 must be a positive integer"),
    (dict(kind="hessian", batch_size=64, small_batch_size=8), "small_batch_size: not a field here"),
])
def test_bad_fields_are_named(quick_config, fields, match):
  quick_config.evals.probe = dict(every=10, **fields)
  with pytest.raises(ConfigError, match=match):
    validate(quick_config, 8)


def test_a_good_section_validates(quick_config):
  quick_config.evals.curvature = dict(kind="hessian", every=10, batch_size=64)
  quick_config.evals.noise = dict(kind="noise_scale", every=10, batch_size=256,
                                  small_batch_size=32)
  validate(quick_config, 8)
