"""The CREST task (tasks/crest.py): delta tracks w_t - w_0 under plain SGD, the region check
decides reselection, coresets are class balanced with weights of mean 1, baselines select as
documented and run alike on 8 devices and 1; in the trainer, a preempted run resumes bitwise
and selects as on one device; config errors name the value."""
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from big_batch import checks, train
from big_batch.data import datasets
from big_batch.parallel import mesh as mesh_lib
from big_batch.tasks import crest as crest_task
from big_batch.train import loop
from big_batch.train.batch_plan import BatchPlan
from big_batch.train.feed import Feed, Progress
from big_batch.train.validate import validate
from conftest import load_config

STEPS = 24  # Warm start 13 steps (ceil(400 / 32)), then 11 on coresets.


@pytest.fixture
def config(data_dir):
  return quick(data_dir)


@pytest.fixture(scope="module")
def data(data_dir):
  section = load_config("mnist1d_crest", "quick").data
  section.data_dir = data_dir
  return datasets.load(section)


def drive(config, data, steps, devices=None, keep=(), start=None):
  """The trainer's feed and jitted step up to step `steps` on a 'data' mesh over `devices`,
  from init or from `start` = (step, host state) with a freshly built task: (final state,
  [(rows, weights)], [metrics], {step in `keep`: state before it})."""
  devices = jax.devices()[:1] if devices is None else devices
  config.mesh = dict(data=len(devices), fsdp=1, seq=1)
  mesh = mesh_lib.create(config.mesh, devices)
  task = crest_task.build(config, data, mesh, config.num_steps)
  placed = loop.setup(config, mesh, task)
  plan = BatchPlan(config, data.train.num_examples, mesh_lib.shards(mesh))
  picked, logged, kept = [], [], {}
  first = 0 if start is None else start[0]
  rows = config.batch.size * first
  with jax.set_mesh(mesh):
    state = (placed.init(jax.random.key(config.seed)) if start is None else
             jax.device_put(start[1], placed.state_sharding))
    feed = Feed(task, plan, data.train, seed=config.seed, sharding=placed.batch_sharding,
                prefetch=0, pool_size=None, progress=Progress(first, rows, rows))
    for step in range(first, steps):
      if step in keep:
        kept[step] = jax.device_get(state)
      state, batch = feed.next(state, feed.next_size(state))
      host = jax.device_get(batch)
      picked.append((host["label"], host.get("weight")))
      state, metrics = placed.train_step(state, batch)
      logged.append(jax.device_get(metrics))
  return jax.device_get(state), picked, logged, kept


@pytest.fixture(scope="module")
def one_selection(data, data_dir):
  """CREST on one device with tau = 1e9: one selection (step 13), checked at every step."""
  config = quick(data_dir)
  config.crest.check_thresh_factor = 1e9
  return drive(config, data, STEPS, keep=(13, 17))


def quick(data_dir):
  config = load_config("mnist1d_crest", "quick")
  config.data.data_dir = data_dir
  config.model = dict(name="mlp", hidden=(16,), norm="none")  # Compiles fast.
  config.optimizer.update(weight_decay=0.0)
  config.evals = {}
  config.crest.measure_gradient_error = False  # Three more compiles; one test turns it on.
  config.num_steps, config.log_every, config.checkpoint_every = STEPS, 1, 100
  return config


def test_delta_is_w_t_minus_w_0_for_plain_sgd(one_selection):
  state, _, logged, kept = one_selection
  crest = state["crest"]
  assert int(crest["selections"]) == 1 and int(crest["reset_step"]) == 13
  # The selection before step 13 resets delta at w_13: delta = -sum_t lr_t g_t = w_24 - w_13
  # for SGD without momentum or weight decay.
  jax.tree.map(lambda d, w, w0: np.testing.assert_allclose(d, w - w0, atol=2e-6),
               crest["delta"], state["params"], kept[13]["params"])
  assert logged[-1]["crest/checks"] == STEPS - 1 - 13  # T_1 = 1: every step after the reset.
  assert logged[-1]["crest/approx_error"] > 0


def test_the_region_check_reselects_when_the_error_exceeds_tau(config, data):
  config.crest.check_thresh_factor = 1e-9  # Any error at all: reselect at every check.
  state, _, _, _ = drive(config, data, STEPS)
  # Step 13 selects; each later step checks (T_1 = 1 while the curvature norm ratio rounds
  # up to 1) and reselects.
  assert int(state["crest"]["selections"]) == STEPS - 13
  assert int(state["crest"]["checks"]) == STEPS - 14


def test_coreset_batches_are_weighted_class_balanced_rows_of_the_random_subsets(config, data):
  config.crest.update(method="coreset", reselect_interval=4, measure_gradient_error=True)
  state, picked, _, _ = drive(config, data, STEPS)
  crest = state["crest"]
  size = int(crest["coreset_size"])
  assert size == 5 * 10 * 4  # P_0 subsets x C classes x ceil(32 / 10) rows.
  labels = np.asarray(data.train.read(crest["coreset"][:size])["label"])
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), [20] * 10)
  np.testing.assert_allclose(crest["weight"][:size].mean(), 1.0, rtol=1e-5)
  subsets = crest["subsets"][:int(crest["num_subsets"])]
  for p in range(5):
    assert np.isin(crest["coreset"][p * 40:(p + 1) * 40], subsets[p]).all()
  assert int(crest["selections"]) == 3  # At steps 13, 17, 21.
  assert all(np.all(w == 1) for _, w in picked[:13])  # Warm start: weight 1.
  assert all(np.any(w != 1) for _, w in picked[13:])
  assert int(crest["checks"]) == 0
  assert 0 < float(crest["grad_error_coreset"]) and 0 < float(crest["grad_error_random"])


def test_drop_learned_removes_the_evaluated_low_loss_rows_from_the_pool(config, data):
  # Every loss is below 100, so every row evaluated at the selection (step 13, short epoch 1,
  # a drop epoch for drop_interval 1) counts as learned and leaves the pool.
  config.crest.update(method="coreset", drop_learned=True, watch_interval=1, drop_interval=1,
                      drop_thresh=100.0, min_pool_fraction=0.0)
  state, _, logged, _ = drive(config, data, 14)
  crest = state["crest"]
  evaluated = np.unique(crest["subsets"][:int(crest["num_subsets"])])
  assert (crest["watch"][0, evaluated] >= 0).all()
  assert int(crest["pool"].sum()) == 4000 - len(evaluated)
  assert not crest["pool"][evaluated].any()
  assert logged[-1]["crest/pool_size"] == 4000 - len(evaluated)


def test_random_baseline_on_8_devices_equals_1_and_craig_selects_once(config, data):
  config.crest.update(method="random", reselect_interval=4)
  single, picked, _, _ = drive(config, data, STEPS)
  assert int(single["crest"]["selections"]) == 3
  assert all(np.all(w == 1) for _, w in picked)
  sharded, _, _, _ = drive(config, data, STEPS, devices=jax.devices())
  for name in ("coreset", "subsets", "order", "cursor", "selections"):
    np.testing.assert_array_equal(sharded["crest"][name], single["crest"][name])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               sharded["params"], single["params"])
  config.crest.update(method="craig")
  state, _, _, _ = drive(config, data, 16)
  assert int(state["crest"]["selections"]) == 1


def test_a_task_built_anew_continues_from_the_state_alone(one_selection, data, data_dir):
  """Everything the selection needs is in the state: continuing from step 17 (inside the
  coreset phase) with a new task equals the uninterrupted run bitwise."""
  config = quick(data_dir)
  config.crest.check_thresh_factor = 1e9
  whole, _, _, kept = one_selection
  resumed, _, _, _ = drive(config, data, STEPS, start=(17, kept[17]))
  jax.tree.map(np.testing.assert_array_equal, resumed, whole)


def params_at(workdir, step):
  state = ocp.StandardCheckpointer().restore(str(workdir / "checkpoints" / str(step) / "state"))
  return jax.tree.map(np.asarray, state)


@pytest.mark.slow
def test_resume_is_exact_and_8_devices_select_as_1(config, monkeypatch, tmp_path,
                                                   one_selection):
  config.crest.check_thresh_factor = 1e9
  config.mesh = dict(data=-1, fsdp=1, seq=1)  # 8 simulated devices.
  whole = train.run(config, str(tmp_path / "whole"))
  real = loop._PreemptionFlag.check

  def check(self, current):
    self.raised = self.raised or current == 17  # Inside the coreset phase.
    return real(self, current)

  with monkeypatch.context() as patch:
    patch.setattr(loop._PreemptionFlag, "check", check)
    stopped = train.run(config, str(tmp_path / "resumed"))
  assert stopped["preempted"] and stopped["final_step"] == 17
  resumed = train.run(config, str(tmp_path / "resumed"))
  assert resumed["final_step"] == whole["final_step"] == STEPS
  jax.tree.map(np.testing.assert_array_equal, params_at(tmp_path / "whole", STEPS),
               params_at(tmp_path / "resumed", STEPS))
  # Against one device: the same random subsets and selections; facility location on
  # logits that differ by rounding may break a near-tie differently, so the coresets
  # agree on nearly all rows.
  single, sharded = one_selection[0]["crest"], params_at(tmp_path / "whole", STEPS)["crest"]
  np.testing.assert_array_equal(sharded["subsets"], single["subsets"])
  for name in ("selections", "checks", "coreset_size"):
    assert int(sharded[name]) == int(single[name])
  size = int(single["coreset_size"])
  assert np.isin(sharded["coreset"][:size], single["coreset"][:size]).mean() >= 0.97


@pytest.mark.parametrize("field, value, message", [
    ("method", "greedy", "config.crest.method='greedy' is not one of"),
    ("random_subset_size", 1.5, "config.crest.random_subset_size=1.5 must be a fraction"),
    ("num_minibatch_coreset", 0, "config.crest.num_minibatch_coreset=0 must be a positive"),
    ("check_thresh_factor", -0.1, "config.crest.check_thresh_factor=-0.1 must be a positive"),
    ("reselect_interval", 0, "config.crest.reselect_interval=0 must be a positive integer"),
])
def test_bad_crest_values_are_errors_naming_them(config, field, value, message):
  config.crest[field] = value
  with pytest.raises(checks.ConfigError, match=message.replace("[", r"\[")):
    validate(config, jax.device_count())


def test_a_candidate_pool_is_an_error(config):
  config.batch.pool_size = 64
  with pytest.raises(checks.ConfigError, match="config.batch.pool_size=64 must be unset"):
    validate(config, jax.device_count())


def test_too_large_random_subsets_are_an_error_naming_the_value(config, data):
  smallest = np.bincount(data.train.read(np.arange(4000))["label"]).min()
  config.crest.random_subset_size = 1.0  # 400 rows per class: more than the smallest has.
  assert smallest < 400
  with pytest.raises(checks.ConfigError, match="random_subset_size=1.0 asks for 400"):
    crest_task.build(config, data, mesh_lib.create(dict(data=1), jax.devices()[:1]), STEPS)
