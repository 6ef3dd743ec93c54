"""The trainer's sharded state and step on 8 devices against one device: same parameters.

States and steps come from `loop.setup`, as in the trainer; every mesh is fed the same
in-memory batches. Under `jax.jit` the global batch is the same whatever the mesh (BN
statistics are over the global batch), so only the order of floating-point reductions may
differ between meshes. The BN CNN trains with SGD: its conv biases sit in front of BN, which
subtracts them again, so their exact gradient is 0 and what they get is rounding noise, which
Adam (g / sqrt(v)) would blow up into steps of +-lr that differ from mesh to mesh.
"""
import jax
import numpy as np
import pytest

from big_batch import tasks
from big_batch.data.datasets import Dataset
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib
from big_batch.train import loop

STEPS, BATCH = 20, 64
DATA = Dataset(splits={}, num_classes=10, input_shape=(40,))
MODELS = {
    "mlp": (dict(name="mlp", hidden=(64, 64), norm="none"), "adamw"),
    "bn_cnn": (dict(name="cnn1d", channels=(8, 16), norm="batch"), "sgd"),
}
# Leaves of norm below NOISE_NORM (the zero-gradient biases, which stay at their zero init up
# to rounding) are compared in absolute terms, the others relative to their norm.
NOISE_NORM, ABSOLUTE, RELATIVE = 1e-4, 1e-6, 1e-5


def _batches():
  rng = np.random.default_rng(0)
  return [{"input": rng.normal(size=(BATCH, 40)).astype(np.float32),
           "label": rng.integers(0, 10, BATCH).astype(np.int32)} for _ in range(STEPS)]


def _config(quick_config, model, sharding, mesh_shape):
  config = quick_config.copy_and_resolve_references()
  config.evals = {}
  config.model, config.optimizer.name = MODELS[model]
  if config.optimizer.name == "sgd":
    config.optimizer.learning_rate = 0.1
  config.batch.size = BATCH
  config.sharding = sharding
  config.mesh = dict(data=mesh_shape[0], fsdp=mesh_shape[1], seq=1)
  return config


def _train(config, initial_state=None, devices=None):
  """STEPS trainer steps of `config` on a mesh over `devices` (all by default).

  The state is `setup.init`'s, or `initial_state` placed with the trainer's state shardings
  (as a restored checkpoint is): init is a pure function of the seed, and compiling it once
  instead of once per mesh keeps the test fast.
  """
  mesh = mesh_lib.create(config.mesh, devices)
  setup = loop.setup(config, mesh, tasks.build(config, DATA, mesh, STEPS))
  batch_sharding = sharding_lib.batch_sharding(mesh)
  with jax.set_mesh(mesh):
    if initial_state is None:
      state = setup.init(jax.random.key(config.seed))
    else:
      state = jax.device_put(initial_state, setup.state_sharding)
    for batch in _batches():
      state, _ = setup.train_step(state, jax.device_put(batch, batch_sharding))
  return state


@pytest.fixture(scope="module")
def one_device():
  """Per model, (initial state, parameters after STEPS steps) on one device, computed once."""
  cache = {}

  def run(quick_config, model):
    if model not in cache:
      config = _config(quick_config, model, "replicated", (1, 1))
      mesh = mesh_lib.create(config.mesh, jax.devices()[:1])
      initial = jax.device_get(loop.setup(config, mesh, tasks.build(config, DATA, mesh, STEPS)).init(
          jax.random.key(config.seed)))
      cache[model] = initial, jax.device_get(_train(config, initial, jax.devices()[:1])["params"])
    return cache[model]

  return run


def _far_leaves(got, want) -> dict:
  """{path: (||got - want||, ||want||)} for the leaves outside the tolerance."""
  got, want = _by_path(got), _by_path(want)
  far = {}
  for path, leaf in want.items():
    diff, norm = float(np.linalg.norm(np.asarray(got[path]) - leaf)), float(np.linalg.norm(leaf))
    if diff > (RELATIVE * norm if norm > NOISE_NORM else ABSOLUTE):
      far[path] = (diff, norm)
  return far


def _by_path(tree) -> dict:
  return {sharding_lib.path_string(path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _moments(opt_state) -> dict:
  """{path: (parameter path, sharding)} for the optimizer's per-parameter moments."""
  moments = {}
  for path, leaf in _by_path(opt_state).items():
    parts = path.split("/")
    names = [i for i, part in enumerate(parts) if part in ("mu", "nu", "trace")]
    if names:
      moments[path] = ("/".join(parts[names[0] + 1:]), leaf.sharding)
  return moments


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("sharding", ["replicated", "fsdp"])
@pytest.mark.parametrize("mesh_shape", [(8, 1), (4, 2), (2, 4)])
def test_eight_devices_train_like_one(quick_config, one_device, model, sharding, mesh_shape):
  initial, want = one_device(quick_config, model)
  state = _train(_config(quick_config, model, sharding, mesh_shape), initial)
  assert not _far_leaves(state["params"], want)

  # Optimizer state lands with the sharding of its parameter (Adam's mu, nu; SGD's trace).
  params = {path: leaf.sharding for path, leaf in _by_path(state["params"]).items()}
  moments = _moments(state["opt_state"])
  assert {param for param, _ in moments.values()} == set(params)
  for path, (param, moment_sharding) in moments.items():
    assert moment_sharding == params[param], path
  sharded = [p for p, s in params.items() if "fsdp" in jax.tree.leaves(tuple(s.spec))]
  assert bool(sharded) == (sharding == "fsdp" and mesh_shape[1] > 1), sharded
