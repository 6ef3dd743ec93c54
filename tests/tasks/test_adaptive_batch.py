"""The adaptive-batch task: its test statistics on 8 devices in 4 micro-batches against one
device and a numpy brute force; end to end in the trainer, sizes that only grow, logged,
realized by accumulation past the micro-batch cap, resumed bitwise; config errors."""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from big_batch import checks, models, train
from big_batch.data.datasets import Dataset
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib
from big_batch.tasks import adaptive_batch, supervised
from big_batch.train import loop
from big_batch.train.validate import validate
from conftest import load_config

ROWS, FEATURES, CLASSES = 64, 40, 10
DATA = Dataset(splits={}, num_classes=CLASSES, input_shape=(FEATURES,))
STATISTICS = ("variance", "grad_sq_norm", "inner_product_variance", "proposed")


def task_config(test="augmented_inner_product", max_micro_batch=None):
  config = load_config("mnist1d_adadagrad", "quick")
  config.model = dict(name="mlp", hidden=(16,), norm="none")
  config.evals = {}
  config.batch.size = ROWS
  config.batch.max_micro_batch = max_micro_batch
  config.adaptive_batch.update(test=test, theta=0.3, nu=0.6, max_batch_size=4096)
  return config


def one_step(config, devices, initial=None):
  """The task's jitted train step (the trainer's, `loop.setup`) on a 'data' mesh over
  `devices`, from `initial` (default: the task's init) placed as a restored checkpoint is."""
  config.mesh = dict(data=len(devices), fsdp=1, seq=1)
  mesh = mesh_lib.create(config.mesh, devices)
  placed = loop.setup(config, mesh, adaptive_batch.build(config, DATA, mesh, 10))
  rng = np.random.default_rng(0)
  batch = {"input": rng.normal(size=(ROWS, FEATURES)).astype(np.float32),
           "label": rng.integers(0, CLASSES, ROWS).astype(np.int32)}
  with jax.set_mesh(mesh):
    if initial is None:
      initial = jax.device_get(placed.init(jax.random.key(0)))
    state, metrics = placed.train_step(
        jax.device_put(initial, placed.state_sharding),
        jax.device_put(batch, sharding_lib.batch_sharding(mesh)))
  return initial, batch, jax.device_get(state), jax.device_get(metrics)


@pytest.fixture(scope="module")
def single_and_sharded():
  single = one_step(task_config(), jax.devices()[:1])
  # 64 rows = 8 devices x 4 micro-batches x 2 rows.
  sharded = one_step(task_config(max_micro_batch=2), jax.devices(), initial=single[0])
  return single, sharded


def test_statistics_on_8_devices_in_4_micro_batches_equal_one_device(single_and_sharded):
  (_, _, state, metrics), (_, _, sharded_state, sharded_metrics) = single_and_sharded
  for name in STATISTICS:
    key = f"adaptive_batch/{name}"
    assert metrics[key] > 0, key
    np.testing.assert_allclose(sharded_metrics[key], metrics[key], rtol=1e-4, err_msg=key)
  assert int(sharded_state["batch_size"]) == int(state["batch_size"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               sharded_state["params"], state["params"])


def test_statistics_equal_a_brute_force_over_per_example_gradients(single_and_sharded):
  """Per-example gradients of the MLP's cross-entropy, one example at a time (a Python loop
  of jax.grad), flattened; numpy variances with correction 1; the augmented test as the
  authors' code writes it (theta = 0.3, nu = 0.6), over the whole parameter vector."""
  initial, batch, state, metrics = single_and_sharded[0]
  initial = initial["params"]
  model = models.build(task_config().model, (FEATURES,), CLASSES, nnx.Rngs(0))
  graphdef, _, model_state = nnx.split(model, nnx.Param, ...)

  def example_loss(params, x, label):
    logits = nnx.merge(graphdef, params, model_state)(x)
    return supervised.cross_entropy_and_accuracy(logits, label)[0][0]

  grad = jax.jit(jax.grad(example_loss))
  u = np.stack([np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(
      grad(initial, batch["input"][i:i + 1], batch["label"][i:i + 1]))])
      for i in range(ROWS)]).astype(np.float64)
  g = u.mean(0)
  products = u @ g
  orthogonal = u - np.outer(products / (g @ g), g)
  want = {"variance": u.var(0, ddof=1).sum(), "grad_sq_norm": g @ g,
          "inner_product_variance": products.var(ddof=1)}
  want["proposed"] = max(want["inner_product_variance"] / (0.3**2 * (g @ g) ** 2),
                         orthogonal.var(0, ddof=1).sum() / (0.6**2 * g @ g))
  for name, value in want.items():
    np.testing.assert_allclose(metrics[f"adaptive_batch/{name}"], value, rtol=1e-4,
                               err_msg=name)
  assert int(state["batch_size"]) == max(ROWS, int(np.ceil(want["proposed"])))


# --- End to end in the trainer ---------------------------------------------------------


@pytest.fixture
def config(data_dir):
  """8 devices; the batch starts at 8 and doubles when it grows (geometric grid of 8), at
  most 16 rows; past 1 row per device (8 in all) a batch accumulates micro-batches."""
  config = load_config("mnist1d_adadagrad", "quick")
  config.data.data_dir = data_dir
  config.batch.size = 8
  config.batch.max_micro_batch = 1
  config.adaptive_batch.update(eta=1.0, test_interval=2, max_batch_size=16)
  config.num_examples = 160
  config.log_every, config.checkpoint_every = 1, 1000
  return config


def preempt_at(monkeypatch, step):
  real = loop._PreemptionFlag.check

  def check(self, current):
    self.raised = self.raised or current == step
    return real(self, current)

  monkeypatch.setattr(loop._PreemptionFlag, "check", check)


def train_records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if "train/batch_size" in r]


def final_params(workdir, step):
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step),
                                                          "state"))
  return jax.tree.map(np.asarray, state["params"])


def test_the_batch_grows_by_the_test_and_a_resumed_run_is_bitwise_equal(config, monkeypatch,
                                                                        tmp_path):
  made = []
  real_setup = loop.setup
  monkeypatch.setattr(loop, "setup", lambda *args: made.append(real_setup(*args)) or made[-1])
  whole = train.run(config, str(tmp_path / "whole"))
  with monkeypatch.context() as patch:
    preempt_at(patch, 5)
    stopped = train.run(config, str(tmp_path / "resumed"))
  assert stopped["preempted"] and stopped["final_step"] == 5
  resumed = train.run(config, str(tmp_path / "resumed"))
  timeless = lambda records: [{k: v for k, v in r.items() if "per_second" not in k}
                              for r in records]
  logged = train_records(tmp_path / "whole")
  assert timeless(train_records(tmp_path / "resumed")) == timeless(logged)
  assert resumed["examples_seen"] == whole["examples_seen"]
  step = whole["final_step"]
  jax.tree.map(np.testing.assert_array_equal, final_params(tmp_path / "whole", step),
               final_params(tmp_path / "resumed", step))

  sizes = [int(r["train/batch_size"]) for r in logged]
  asked = [int(r["train/adaptive_batch/next_batch_size"]) for r in logged]
  assert sizes == sorted(sizes) and sizes[0] == 8 and sizes[-1] == 16  # Grew to the cap.
  # Each step's size is the previous step's request rounded up to 8 * 2^n, at most 16 ...
  rounded = [min(16, 8 * 2 ** max(0, int(np.ceil(np.log2(a / 8))))) for a in asked]
  assert sizes[1:] == rounded[:-1]
  # ... which changes only after steps 1, 3, 5, ... (tests at state steps 0, 2, 4, ...).
  changed = [r["step"] for r, before, after in zip(logged, asked, asked[1:]) if after != before]
  assert changed and all(step % 2 == 0 for step in changed)
  assert whole["examples_seen"] == sum(sizes) <= config.num_examples
  # One compile per distinct size in the uninterrupted run.
  assert made[0].train_step._cache_size() == len(set(sizes))


# --- Config errors -----------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("model.norm", "batch", r"config.model.norm='batch' must be 'none' for adaptive batch"),
    ("batch.schedule", ((64, 16),), r"config.batch.schedule=.* must be empty"),
    ("batch.lr_scaling", "sqrt", r"config.batch.lr_scaling='sqrt' must be 'none'"),
    ("batch.size", 1, r"config.batch.size=1 must be at least 2"),
    ("adaptive_batch.test", "ip+orth", r"config.adaptive_batch.test='ip\+orth' is not one of"),
    ("adaptive_batch.eta", 0.0, r"config.adaptive_batch.eta=0.0 must be a positive number"),
    ("adaptive_batch.max_batch_size", 1,
     r"config.adaptive_batch.max_batch_size=1 is smaller than config.batch.size=2"),
    ("adaptive_batch.tets_interval", 3,
     r"config.adaptive_batch.tets_interval: not a field here \(adaptive_batch fields"),
])
def test_bad_fields_are_named(field, value, message):
  config = load_config("mnist1d_adadagrad", "quick")
  section, key = field.rsplit(".", 1)
  if field == "batch.lr_scaling":
    config.batch.base_size = 2
  if field == "model.norm":
    config.model.norm_momentum = 0.9
  config[section][key] = value
  with pytest.raises(checks.ConfigError, match=message):
    validate(config, 8)


def test_the_shipped_config_validates_on_1_and_8_devices():
  for arg in (None, "quick"):
    for devices in (1, 8):
      validate(load_config("mnist1d_adadagrad", arg), devices)
