"""ConAdv and DisAdv (tasks/conadv.py) against hand-written adversarial steps: the attacks'
closed forms, the sequential step, the one-step-stale perturbation, epsilon = 0 as supervised
training, the independence of the two passes (jaxpr and numbers), resume and 8 devices."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.extend import core as jax_core
from jax.sharding import PartitionSpec as P

from big_batch import tasks, train
from big_batch.checks import ConfigError
from big_batch.data.datasets import Dataset
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib
from big_batch.tasks import adversarial, conadv
from big_batch.train import loop
from big_batch.train.validate import validate
from conftest import load_config

LR, EPS, MOMENTUM, ROWS, FEATURES, CLASSES = 0.1, 1e-5, 0.99, 8, 5, 3
DATA = Dataset(splits={}, num_classes=CLASSES, input_shape=(FEATURES,))


def batches(count, rows=ROWS, features=FEATURES, classes=CLASSES, seed=0):
  rng = np.random.default_rng(seed)
  return [{"input": jnp.asarray(rng.normal(size=(rows, features)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, classes, rows), jnp.int32)}
          for _ in range(count)]


def task_config(**adversary):
  return ml_collections.ConfigDict({
      "seed": 0, "task": "conadv",
      "model": {"name": "mlp", "hidden": (16,), "norm": "batch"},
      "optimizer": {"name": "sgd", "learning_rate": LR, "momentum": 0.0},
      "batch": {"size": ROWS, "accumulation_steps": 1},
      "adversary": {"staleness": 0, "attack": "fgsm", "norm": "linf", "epsilon": 0.3,
                    **adversary},
  })


def build(config, total_steps=10):
  mesh = mesh_lib.create(dict(data=1), devices=jax.devices()[:1])
  return tasks.build(config, DATA, mesh, total_steps)


# --- The hand-written reference: MLP Dense -> BN (batch statistics) -> ReLU -> Dense --------

def mlp_by_hand(params, x):
  h = x @ params["layers"][0]["kernel"] + params["layers"][0]["bias"]
  mean, var = h.mean(0), h.var(0)
  norm = params["norms"][0]
  h = jnp.maximum((h - mean) / jnp.sqrt(var + EPS) * norm["scale"] + norm["bias"], 0.0)
  return h @ params["head"]["kernel"] + params["head"]["bias"], (mean, var)


def loss_by_hand(params, x, y):
  logits, stats = mlp_by_hand(params, x)
  log_p = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
  return -jnp.take_along_axis(log_p, y[:, None], axis=-1).mean(), stats


@functools.partial(jax.jit, static_argnums=(3, 6))
def attack_by_hand(params, x, y, norm, epsilon, step_size, steps):
  """Projected gradient ascent from delta = 0, the projection written per row."""
  delta = jnp.zeros_like(x)
  for _ in range(steps):
    g = jax.grad(lambda x: loss_by_hand(params, x, y)[0])(x + delta)
    if norm == "linf":
      delta = jnp.clip(delta + step_size * jnp.sign(g), -epsilon, epsilon)
    else:
      delta = delta + step_size * g / jnp.linalg.norm(g, axis=1, keepdims=True)
      length = jnp.linalg.norm(delta, axis=1, keepdims=True)
      delta = delta * jnp.minimum(1.0, epsilon / length)
  return delta


@functools.partial(jax.jit, static_argnums=(6,))
def sgd_step_by_hand(params, running, x, y, delta, alpha=0.0, bn_stats="adversarial"):
  """w - lr grad[(1 - alpha) l(x + delta) + alpha l(x)]; running statistics per bn_stats."""
  def loss(p):
    adv, adv_stats = loss_by_hand(p, x + delta, y)
    clean, clean_stats = loss_by_hand(p, x, y)
    return (1 - alpha) * adv + alpha * clean, (adv_stats, clean_stats)

  grads, (adv_stats, clean_stats) = jax.grad(loss, has_aux=True)(params)
  stats = {"adversarial": adv_stats, "clean": clean_stats,
           "both": jax.tree.map(lambda a, c: (a + c) / 2, adv_stats, clean_stats)}[bn_stats]
  mean, var = stats
  ema = lambda r, s: MOMENTUM * r + (1 - MOMENTUM) * s
  running = {"mean": ema(running["mean"], mean), "var": ema(running["var"], var)}
  return jax.tree.map(lambda p, g: p - LR * g, params, grads), running


def running_of(state):
  return state["model_state"]["norms"][0]


def assert_close(got, want, rtol=2e-5, atol=2e-6):
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=rtol, atol=atol), got, want)


# --- Attacks ------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", adversarial.NORMS)
@pytest.mark.parametrize("steps, step_size", [(1, 0.5), (4, 0.2)])
def test_attacks_on_a_linear_loss_match_their_closed_forms(norm, steps, step_size):
  """For l = <w_i, x_i> the gradient is w_i everywhere: k steps of size s reach
  clip(k s sign(w), +-eps) (l-inf) and min(k s, eps) w / ||w|| (l2)."""
  w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
  epsilon = 0.5
  delta = adversarial.pgd(lambda x: w, jnp.zeros((3, 4)), norm=norm, epsilon=epsilon,
                          step_size=step_size, steps=steps)
  if norm == "linf":
    want = np.clip(steps * step_size * np.sign(w), -epsilon, epsilon)
  else:
    want = min(steps * step_size, epsilon) * w / np.linalg.norm(w, axis=1, keepdims=True)
  np.testing.assert_allclose(delta, want, rtol=1e-6)
  length = adversarial.perturbation_norm(delta, norm)
  np.testing.assert_allclose(length, min(steps * step_size, epsilon), rtol=1e-6)


@pytest.mark.parametrize("norm", adversarial.NORMS)
def test_a_zero_ball_gives_exactly_zero(norm):
  delta = adversarial.pgd(lambda x: jnp.ones_like(x), jnp.ones((2, 3)), norm=norm, epsilon=0.0,
                          step_size=0.1, steps=2)
  np.testing.assert_array_equal(np.abs(delta), np.zeros((2, 3)))


# --- DisAdv (staleness 0) -----------------------------------------------------------------

CASES = {  # name -> (adversary fields, (norm, epsilon, step_size, steps), alpha, bn_stats)
    "fgsm_linf": (dict(), ("linf", 0.3, 0.3, 1), 0.0, "adversarial"),
    "pgd3_l2_clean_half_bn_both": (
        dict(attack="pgd", norm="l2", epsilon=0.8, steps=3, step_size=0.4, clean_weight=0.5,
             bn_stats="both"), ("l2", 0.8, 0.4, 3), 0.5, "both"),
    "fgsm_bn_clean": (dict(bn_stats="clean"), ("linf", 0.3, 0.3, 1), 0.0, "clean"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_disadv_is_the_hand_written_sequential_step(case):
  fields, attack, alpha, bn_stats = CASES[case]
  task = build(task_config(**fields))
  state = task.init(jax.random.key(0))
  step = jax.jit(task.train_step)
  params, running = state["params"], running_of(state)
  for b in batches(3):
    delta = attack_by_hand(params, b["input"], b["label"], *attack)
    params, running = sgd_step_by_hand(params, running, b["input"], b["label"], delta, alpha,
                                       bn_stats)
    state, metrics = step(state, b)
    np.testing.assert_allclose(metrics["perturbation_norm"],
                               adversarial.perturbation_norm(delta, attack[0]), rtol=1e-5)
  assert_close(state["params"], params)
  assert_close(running_of(state), running)


def test_disadv_in_micro_batches_equals_the_whole_batch_without_bn():
  """Without BN each row's perturbation is its own, so attacking micro-batch by micro-batch
  (gradient accumulation) changes nothing."""
  config = task_config(attack="pgd", norm="l2", epsilon=0.8, steps=2, step_size=0.4)
  config.model.norm = "none"
  whole = build(config)
  config.batch.accumulation_steps = 2
  split = build(config)
  state = whole.init(jax.random.key(0))
  b = batches(1)[0]
  assert_close(jax.jit(split.train_step)(state, b)[0]["params"],
               jax.jit(whole.train_step)(state, b)[0]["params"])


def test_warmup_steps_train_without_the_adversary():
  """Two warm-up updates equal supervised ones; the third is adversarial."""
  task = build(task_config(warmup_steps=2))
  state = task.init(jax.random.key(0))
  params, running = state["params"], running_of(state)
  for i, b in enumerate(batches(3)):
    delta = (attack_by_hand(params, b["input"], b["label"], "linf", 0.3, 0.3, 1) if i == 2
             else jnp.zeros_like(b["input"]))
    params, running = sgd_step_by_hand(params, running, b["input"], b["label"], delta)
    state, _ = jax.jit(task.train_step)(state, b)
  assert_close(state["params"], params)


# --- ConAdv (staleness 1) -----------------------------------------------------------------

@pytest.mark.parametrize("concurrency", conadv.CONCURRENCY)
def test_conadv_trains_each_batch_on_the_perturbation_of_the_weights_before(concurrency):
  """Update j (w_j -> w_{j+1}, on b_j) uses attack(w_{j-1}, b_j), computed in the step before;
  update 0 uses attack(w_0, b_0), and the first step changes nothing but the stored batch.
  l2 PGD, so the perturbation moves with the weights."""
  attack = ("l2", 0.8, 0.4, 2)
  task = build(task_config(staleness=1, attack="pgd", norm="l2", epsilon=0.8, steps=2,
                           step_size=0.4, concurrency=concurrency))
  state = task.init(jax.random.key(0))
  step = jax.jit(task.train_step)
  stream = batches(5)
  first, metrics = step(state, stream[0])
  jax.tree.map(np.testing.assert_array_equal, first["params"], state["params"])
  jax.tree.map(np.testing.assert_array_equal, first["model_state"], state["model_state"])
  assert int(first["step"]) == 0 and bool(first["primed"])
  clean_loss, _ = loss_by_hand(state["params"], stream[0]["input"], stream[0]["label"])
  np.testing.assert_allclose(metrics["loss"], clean_loss, rtol=1e-5)
  np.testing.assert_array_equal(metrics["grad_norm"], 0.0)

  weights = [state["params"]]  # w_0, w_1, ... as the hand-written updates make them
  running, state = running_of(state), first
  for j in range(4):
    attacked_at = weights[max(j - 1, 0)]
    stale = attack_by_hand(attacked_at, stream[j]["input"], stream[j]["label"], *attack)
    np.testing.assert_allclose(state["stored"]["perturbation"], stale, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(state["stored"]["input"], stream[j]["input"])
    params, running = sgd_step_by_hand(weights[j], running, stream[j]["input"],
                                       stream[j]["label"], stale)
    weights.append(params)
    state, metrics = step(state, stream[j + 1])
    assert_close(state["params"], params)
    assert_close(running_of(state), running)
    assert int(state["step"]) == j + 1
  # The staleness is real: the batch attacked at the weights it updates would differ.
  fresh = attack_by_hand(weights[3], stream[3]["input"], stream[3]["label"], *attack)
  stale = attack_by_hand(weights[2], stream[3]["input"], stream[3]["label"], *attack)
  assert not np.allclose(fresh, stale, atol=1e-3)


SIGNALS = Dataset(splits={}, num_classes=10, input_shape=(40,))


def train_params(config, stream, total_steps):
  mesh = mesh_lib.create(dict(data=1), devices=jax.devices()[:1])
  task = tasks.build(config, SIGNALS, mesh, total_steps)
  state = task.init(jax.random.key(0))
  step = jax.jit(task.train_step)
  for b in stream:
    state, _ = step(state, b)
  return state["params"]


@pytest.fixture(scope="module")
def epsilon_zero():
  """(config, 11 batches, supervised params after 10 steps): a BN CNN (no bias in front of
  BN, whose exact zero gradient would leave LAMB to amplify rounding noise) and LAMB."""
  config = task_config(epsilon=0.0)
  config.model = {"name": "cnn1d", "channels": (8, 16), "norm": "batch"}
  config.optimizer = {"name": "lamb", "learning_rate": 0.05, "schedule": "cosine",
                      "warmup_steps": 2, "weight_decay": 1e-3}
  stream = batches(11, features=40, classes=10)
  supervised_config = config.copy_and_resolve_references()
  supervised_config.task = "supervised"
  return config, stream, train_params(supervised_config, stream[:10], 10)


def test_epsilon_zero_disadv_is_supervised_training_bitwise(epsilon_zero):
  config, stream, want = epsilon_zero
  jax.tree.map(np.testing.assert_array_equal, train_params(config, stream[:10], 10), want)


@pytest.mark.parametrize("concurrency", conadv.CONCURRENCY)
def test_epsilon_zero_conadv_after_11_steps_is_supervised_after_10(epsilon_zero, concurrency):
  """Definition (module docstring): N + 1 steps of staleness 1 make the N supervised updates
  on the same first N batches of the stream, with the same schedule."""
  config, stream, want = epsilon_zero
  config = config.copy_and_resolve_references()
  config.adversary.update(staleness=1, concurrency=concurrency)
  assert_close(train_params(config, stream, 11), want, rtol=1e-5, atol=1e-6)


# --- The two passes of a ConAdv step are independent -----------------------------------------

def leaf_dependencies(fn, *args):
  """{output path: set of input paths it depends on} from the jaxpr of fn(*args).

  Conservative: every output of an equation depends on every input of it (sub-jaxprs of
  loops, jitted helpers and custom derivatives are taken whole)."""
  closed = jax.make_jaxpr(fn)(*args)
  jaxpr = closed.jaxpr
  in_paths = [sharding_lib.path_string(p) for p, _ in jax.tree_util.tree_leaves_with_path(args)]
  deps = {var: {path} for var, path in zip(jaxpr.invars, in_paths)}

  def of(var):
    return set() if isinstance(var, jax_core.Literal) else deps.get(var, set())

  for eqn in jaxpr.eqns:
    inputs = set().union(*(of(v) for v in eqn.invars))
    for var in eqn.outvars:
      deps[var] = inputs
  out_tree = jax.eval_shape(fn, *args)
  out_paths = [sharding_lib.path_string(p)
               for p, _ in jax.tree_util.tree_leaves_with_path(out_tree)]
  return {path: of(var) for path, var in zip(out_paths, jaxpr.outvars)}


def _under(deps, prefix):
  return set().union(*(d for path, d in deps.items() if path.startswith(prefix)))


@pytest.mark.parametrize("attack", [dict(), dict(attack="pgd", steps=2, step_size=0.2)])
def test_in_the_jaxpr_the_update_and_the_next_perturbation_do_not_depend_on_each_other(attack):
  task = build(task_config(staleness=1, clean_weight=0.3, concurrency="independent", **attack))
  state = task.init(jax.random.key(0))
  deps = leaf_dependencies(task.train_step, state, batches(1)[0])
  update = _under(deps, "0/params") | _under(deps, "0/opt_state") | _under(deps, "0/model_state")
  perturbation = deps["0/stored/perturbation"]
  # The weight-gradient side reads the stored batch, never the incoming one ...
  assert {"0/stored/input", "0/stored/label", "0/stored/perturbation"} <= update
  assert not {p for p in update if p.startswith("1/")}
  # ... and the next perturbation reads the incoming batch and w_t, never the stored batch.
  assert {"1/input", "1/label"} <= perturbation
  assert any(p.startswith("0/params/") for p in perturbation)
  assert not {p for p in perturbation if p.startswith("0/stored/") or p.startswith("0/opt_state")}


def test_the_jaxpr_analysis_sees_the_batched_pass_as_one():
  """The control: the batched form runs both members through the same equations, so the
  same analysis finds each side depending on the other's inputs (hence the numeric test)."""
  task = build(task_config(staleness=1, concurrency="batched"))
  deps = leaf_dependencies(task.train_step, task.init(jax.random.key(0)), batches(1)[0])
  assert "1/input" in _under(deps, "0/params")
  assert "0/stored/input" in deps["0/stored/perturbation"]


@pytest.mark.parametrize("concurrency", conadv.CONCURRENCY)
def test_changing_one_pass_input_leaves_the_other_pass_output_bitwise(concurrency):
  """The batched pass shares its equations between members, so the jaxpr cannot separate
  them; the numbers can: new weights ignore the incoming batch, the new perturbation the
  stored one (l2 PGD, so the perturbation is a smooth function of its inputs)."""
  task = build(task_config(staleness=1, attack="pgd", norm="l2", epsilon=0.8, steps=2,
                           step_size=0.4, concurrency=concurrency))
  step = jax.jit(task.train_step)
  a, b, c = batches(3)
  state, _ = step(task.init(jax.random.key(0)), a)  # Stores a.
  base, _ = step(state, b)
  other_next, _ = step(state, c)
  jax.tree.map(np.testing.assert_array_equal, other_next["params"], base["params"])
  jax.tree.map(np.testing.assert_array_equal, other_next["model_state"], base["model_state"])
  assert not np.allclose(other_next["stored"]["perturbation"], base["stored"]["perturbation"])
  noise = jnp.asarray(np.random.default_rng(1).normal(size=(ROWS, FEATURES)), jnp.float32)
  moved = {**state, "stored": {**state["stored"], "input": state["stored"]["input"] + noise}}
  other_stored, _ = step(moved, b)
  np.testing.assert_array_equal(other_stored["stored"]["perturbation"],
                                base["stored"]["perturbation"])
  assert not np.allclose(other_stored["params"]["head"]["kernel"],
                         base["params"]["head"]["kernel"])


# --- In the trainer: resume, 8 devices ------------------------------------------------------

@pytest.fixture
def run_config(data_dir):
  config = load_config("mnist1d_conadv", "quick")
  config.data.data_dir = data_dir
  config.model = dict(name="mlp", hidden=(16,), norm="batch")  # Compiles fast.
  config.evals = {}
  config.batch.size = 32
  config.num_steps, config.log_every, config.checkpoint_every = 12, 1, 100
  return config


def preempt_at(monkeypatch, step):
  real = loop._PreemptionFlag.check

  def check(self, current):
    self.raised = self.raised or current == step
    return real(self, current)

  monkeypatch.setattr(loop._PreemptionFlag, "check", check)


def final_state(workdir, step):
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step),
                                                          "state"))
  return jax.tree.map(np.asarray, state)


def train_records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if "examples_per_second" not in k}
            for line in f if "train/loss" in line]


def test_a_killed_and_resumed_conadv_run_equals_an_uninterrupted_one(run_config, monkeypatch,
                                                                    tmp_path):
  whole = train.run(run_config, str(tmp_path / "whole"))
  with monkeypatch.context() as patch:
    preempt_at(patch, 5)
    stopped = train.run(run_config, str(tmp_path / "resumed"))
  assert stopped["preempted"] and stopped["final_step"] == 5
  resumed = train.run(run_config, str(tmp_path / "resumed"))
  assert resumed["final_step"] == whole["final_step"] == 12
  assert train_records(tmp_path / "resumed") == train_records(tmp_path / "whole")
  # Everything, the stored batch and its perturbation included, bitwise.
  jax.tree.map(np.testing.assert_array_equal, final_state(tmp_path / "resumed", 12),
               final_state(tmp_path / "whole", 12))
  assert int(final_state(tmp_path / "whole", 12)["step"]) == 11  # 12 steps, 11 updates.


def _trained_on(config, devices, initial, stream):
  mesh = mesh_lib.create(config.mesh, devices)
  data = Dataset(splits={}, num_classes=10, input_shape=(40,))
  setup = loop.setup(config, mesh, tasks.build(config, data, mesh, len(stream)))
  with jax.set_mesh(mesh):
    state = jax.device_put(initial, setup.state_sharding)
    for b in stream:
      state, _ = setup.train_step(state, jax.device_put(b, setup.batch_sharding))
  return state


@pytest.mark.parametrize("concurrency", conadv.CONCURRENCY)
def test_eight_devices_data_parallel_train_like_one(run_config, concurrency):
  """The BN MLP with SGD (its BN makes the first biases pure rounding noise, which Adam would
  amplify; tests/parallel/test_sharding_equivalence.py)."""
  config = run_config
  config.optimizer = dict(name="sgd", learning_rate=0.1, momentum=0.9)
  config.batch.size = 64
  config.adversary.concurrency = concurrency
  stream = batches(6, rows=64, features=40, classes=10)
  config.mesh = dict(data=1, fsdp=1, seq=1)
  one = jax.devices()[:1]
  mesh = mesh_lib.create(config.mesh, one)
  data = Dataset(splits={}, num_classes=10, input_shape=(40,))
  initial = jax.device_get(loop.setup(config, mesh, tasks.build(config, data, mesh, 6)).init(
      jax.random.key(0)))
  want = jax.device_get(_trained_on(config, one, initial, stream))
  config.mesh = dict(data=8, fsdp=1, seq=1)
  got = _trained_on(config, jax.devices(), initial, stream)
  for leaf in jax.tree.leaves(got["stored"]):
    assert leaf.sharding.spec == P(("data", "fsdp"))
  assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(got["params"]))
  assert_close(jax.device_get(got["params"]), want["params"], rtol=1e-4, atol=1e-5)
  assert_close(jax.device_get(got["stored"]), want["stored"], rtol=1e-4, atol=1e-5)


# --- Config errors ------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (dict(staleness=2), r"config.adversary.staleness=2 is not one of \[0, 1\]"),
    (dict(steps=3), r"config.adversary.steps=3 is for attack='pgd'"),
    (dict(attack="pgd", steps=None, step_size=0.1), r"config.adversary.steps=None must be a "
                                                    "positive integer"),
    (dict(clean_weight=1.0), r"config.adversary.clean_weight=1.0 must be a number in \[0, 1\)"),
    (dict(epsilon=-0.1), r"config.adversary.epsilon=-0.1 must be a non-negative number"),
    (dict(staleness=0), r"config.adversary.concurrency='independent' applies to staleness 1 only"),
    (dict(bn_stats="mixed"), r"config.adversary.bn_stats='mixed' is not one of"),
])
def test_bad_adversary_fields_are_config_errors(change, message):
  config = load_config("mnist1d_conadv", "quick")
  config.adversary.update(change)
  with pytest.raises(ConfigError, match=message):
    validate(config, 8)


def test_staleness_one_needs_one_batch_size():
  config = load_config("mnist1d_conadv", "quick")
  config.batch.schedule = ((0, 256), (1024, 512))
  with pytest.raises(ConfigError, match=r"config.batch.schedule changes the batch size "
                                        r"\(\[256, 512\]\)"):
    validate(config, 8)
  config = load_config("mnist1d_conadv", "quick")
  config.batch.accumulation_steps = 2
  validate(config, 8)  # Micro-batches are fine (next test).


@pytest.mark.parametrize("norm, micro", [("none", dict(accumulation_steps=4)),
                                         ("none", dict(max_micro_batch=2)),
                                         ("ghost", dict(accumulation_steps=2))])
def test_conadv_in_micro_batches_equals_the_whole_batch_when_rows_do_not_interact(norm, micro):
  """Without BN (or with ghost batches inside a micro-batch) each row's loss, gradient and
  perturbation are its own, so computing the stored batch's update and the incoming batch's
  perturbation micro-batch by micro-batch changes neither, over three steps (the perturbations
  come back in row order: a mix-up would train rows on other rows' perturbations). l2 PGD."""
  config = task_config(staleness=1, attack="pgd", norm="l2", epsilon=0.8, steps=2,
                       step_size=0.4)
  config.model.norm = norm
  if norm == "ghost":
    config.model.ghost_batch_size = 4
  whole = build(config)
  config.batch.update(micro)
  split = build(config)
  state = whole.init(jax.random.key(0))
  a, b = state, state
  for batch in batches(3):
    a, metrics_a = jax.jit(whole.train_step)(a, batch)
    b, metrics_b = jax.jit(split.train_step)(b, batch)
  assert_close(b["params"], a["params"])
  np.testing.assert_allclose(b["stored"]["perturbation"], a["stored"]["perturbation"],
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics_b["loss"], metrics_a["loss"], rtol=1e-5)
