"""Classification on weighted mini-batch coresets: CREST (Yang, Kang & Mirzasoleiman, ICML 2023).

The supervised task (softmax cross-entropy on `config.model`) whose `select` chooses each
batch's rows and their weights (selection/crest.py has the algorithm, arXiv 2306.01244,
as BigML-CS-UCLA/CREST `trainers/crest_trainer.py` runs it). A short epoch is
steps_per_epoch = ceil(N train_frac / B) steps; the first one trains on the trainer's
shuffled batches (warm start). Then each selection draws P class-balanced random subsets of
ceil(rho N / C) rows per class from the candidate pool, picks ceil(B / C) rows per class of
each by facility location on softmax - onehot, and trains on shuffled batches of B rows of
the union with the loss (1/B) sum_i w_i l_i, w the cluster sizes renormalized to mean 1.

`config.crest.method`:
  'crest'    reselect when the quadratic model leaves its region: every T_1 steps, if
             |L_true - F(delta)| > check_thresh_factor L_true on the random subsets; T_1 and
             P adapt to the Hutchinson curvature; drop_learned shrinks the pool;
  'coreset'  the same coresets, reselected every `reselect_interval` steps, P fixed;
  'random'   as 'coreset', but ceil(B / C) uniformly random rows per class, weight 1;
  'craig'    one selection after the warm start (P = num_minibatch_coreset), kept to the end;
  'full'     the trainer's shuffled batches throughout (no `select`).
Fields (the authors' defaults): train_frac 0.1, random_subset_size (rho) 0.01,
num_minibatch_coreset (P_0) 5, check_thresh_factor (tau) 0.1, interval_mul 1, batch_num_mul 5,
reselect_interval (default P_0), drop_learned False, watch_interval 5, drop_interval 20 (short
epochs), drop_thresh 0.1, min_pool_fraction 0.8 (the authors' min_train_size 40,000 of
CIFAR-10's 50,000), measure_gradient_error True.

All selection state (coreset, weights, batch order, random subsets, quadratic model, delta,
AdaHessian moments, T_1, P, loss ring buffer, pool) lives in `state['crest']`, and every random
choice is drawn from (config.seed, step), so a resumed run is bitwise the uninterrupted one.
Metrics `crest/*`: selections, checks, check_interval (T_1), num_coresets (P), pool_size,
approx_error (|L_true - F| / L_true at the last check), grad_error_coreset / grad_error_random
(||grad L_V1 - estimate|| / ||grad L_V1|| of the weighted coreset and of a random batch of its
size, at the last selection) and selected_loss_ratio (mean loss of the selected rows over that
of the subsets).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from big_batch import models, optim
from big_batch.checks import ConfigError
from big_batch.selection import crest as crest_lib
from big_batch.tasks import single_model
from big_batch.tasks.accumulation import accumulate_gradients, steps_for
from big_batch.tasks.common import Task, apply_gradients, nnx_model
from big_batch.tasks.supervised import cross_entropy_and_accuracy

# The config section this task owns (validate names it when another task is chosen).
SECTIONS = ("crest",)

METHODS = ("crest", "coreset", "random", "craig", "full")
_CHUNK = 1024  # Rows per forward pass when the subsets are evaluated (one compile).
_SCALARS = ("coreset_size", "cursor", "num_subsets", "reset_step", "check_interval",
            "num_coresets", "selections", "checks")
_METRICS = ("approx_error", "grad_error_coreset", "grad_error_random", "selected_loss_ratio")
DEFAULTS = dict(method="crest", train_frac=0.1, random_subset_size=0.01,
                num_minibatch_coreset=5, check_thresh_factor=0.1, interval_mul=1.0,
                batch_num_mul=5.0, reselect_interval=None, drop_learned=False,
                watch_interval=5, drop_interval=20, drop_thresh=0.1, min_pool_fraction=0.8,
                measure_gradient_error=True)


def options(config) -> dict:
  """`config.crest` over DEFAULTS."""
  given = config.get("crest", {})
  out = {k: (given[k] if k in given and given[k] is not None else v) for k, v in DEFAULTS.items()}
  if out["reselect_interval"] is None:
    out["reselect_interval"] = out["num_minibatch_coreset"]
  return out


def sizes(opts, num_train: int, num_classes: int, batch_size: int) -> dict:
  """The derived sizes: short epoch, rows per class of a subset and of a coreset, maxima."""
  steps_per_epoch = math.ceil(int(num_train * opts["train_frac"]) / batch_size)
  max_subsets = max(steps_per_epoch, opts["num_minibatch_coreset"])
  subset_per_class = math.ceil(opts["random_subset_size"] * num_train / num_classes)
  coreset_per_class = math.ceil(batch_size / num_classes)
  return dict(steps_per_epoch=steps_per_epoch, max_subsets=max_subsets,
              subset_per_class=subset_per_class, coreset_per_class=coreset_per_class,
              subset_rows=subset_per_class * num_classes,
              max_coreset=max_subsets * num_classes * coreset_per_class)


def build(config, data, mesh, total_steps: int) -> Task:
  """The CREST classification task for `config.model` on `data`."""
  opts = options(config)
  method = opts["method"]
  batch_size = config.batch.size
  num_train, num_classes = data.train.num_examples, data.num_classes
  size = sizes(opts, num_train, num_classes, batch_size)
  labels = np.asarray(data.train.read(np.arange(num_train))["label"])
  smallest = np.bincount(labels, minlength=num_classes).min()
  if method not in ("full",) and size["subset_per_class"] > smallest:
    raise ConfigError(
        f"config.crest.random_subset_size={opts['random_subset_size']} asks for "
        f"{size['subset_per_class']} rows per class, more than the smallest class's {smallest}")
  watch_rows = opts["watch_interval"] if opts["drop_learned"] else 1
  min_pool = int(opts["min_pool_fraction"] * num_train)
  accumulation_steps = config.batch.get("accumulation_steps", 1)
  max_micro_batch = config.batch.get("max_micro_batch")

  def new_model(rng):
    return models.build(config.model, data.input_shape, data.num_classes, nnx.Rngs(rng))

  optimizer = optim.build(config.optimizer, total_steps, batch=config.batch)
  graphdef, model_init = nnx_model(new_model, optimizer.tx)

  def forward(params, model_state, inputs, train):
    model = nnx.merge(graphdef, params, model_state)
    model.train() if train else model.eval()
    logits = model(inputs)
    return logits, nnx.split(model, nnx.Param, ...)[2].to_pure_dict()

  def init(rng):
    state = model_init(rng)
    zeros = jax.tree.map(jnp.zeros_like, state["params"])
    scalar = lambda v: jnp.asarray(v, jnp.int32)
    state["crest"] = {
        "coreset": jnp.zeros(size["max_coreset"], jnp.int32),
        "weight": jnp.zeros(size["max_coreset"], jnp.float32),
        "order": jnp.zeros(size["max_coreset"], jnp.int32),
        "subsets": jnp.zeros((size["max_subsets"], size["subset_rows"]), jnp.int32),
        "coreset_size": scalar(0), "cursor": scalar(0), "num_subsets": scalar(0),
        "reset_step": scalar(size["steps_per_epoch"]), "check_interval": scalar(1),
        "num_coresets": scalar(opts["num_minibatch_coreset"]), "selections": scalar(0),
        "checks": scalar(0),
        "start_loss": jnp.zeros((), jnp.float32), "gradient": zeros, "curvature": zeros,
        "delta": zeros, "moments": {"m": zeros, "v": zeros, "count": scalar(0)},
        "initial_norm": jnp.zeros((), jnp.float32),
        "watch": -jnp.ones((watch_rows, num_train if opts["drop_learned"] else 1),
                           jnp.float32),
        "pool": jnp.ones(num_train, jnp.bool_),
        **{name: jnp.zeros((), jnp.float32) for name in _METRICS},
    }
    return state

  def weighted_loss(params, model_state, batch):
    """(1/B) sum_i w_i l_i (CREST `_forward_and_backward`), rows without weights weight 1."""
    logits, model_state = forward(params, model_state, batch["input"], train=True)
    loss, correct = cross_entropy_and_accuracy(logits, batch["label"])
    weight = batch.get("weight")
    weighted = loss if weight is None else loss * weight
    return weighted.mean(), (model_state, {"accuracy": correct.mean()})

  def train_step(state, batch):
    rows = jax.tree.leaves(batch)[0].shape[0]
    steps = steps_for(rows, None, accumulation_steps, max_micro_batch)
    loss, (model_state, aux), grads = accumulate_gradients(
        weighted_loss, state["params"], state["model_state"], batch, steps)
    params, opt_state, metrics = apply_gradients(optimizer, state["params"], state["opt_state"],
                                                 grads, state["step"])
    crest = dict(state["crest"])
    rate = optimizer.learning_rate(state["step"])
    crest["delta"] = jax.tree.map(lambda d, g: d - rate * g, crest["delta"], grads)
    logged = {f"crest/{name}": crest[name].astype(jnp.float32)
              for name in ("selections", "checks", "check_interval", "num_coresets",
                           *_METRICS)}
    logged["crest/pool_size"] = crest["pool"].sum().astype(jnp.float32)
    new_state = {**state, "step": state["step"] + 1, "params": params, "opt_state": opt_state,
                 "model_state": model_state, "crest": crest}
    return new_state, {**metrics, **aux, **logged, "loss": loss}

  # --- Host-side selection: jitted pieces ------------------------------------------------
  @jax.jit
  def logits_of(params, model_state, inputs):
    return forward(params, model_state, inputs, train=False)[0]

  @jax.jit
  def mean_gradient(params, model_state, inputs, labels, coefficient):
    """grad of sum_i a_i l_i: a = 1/n for a mean, w_i / n for a weighted coreset."""
    def loss(p):
      logits = forward(p, model_state, inputs, train=True)[0]
      return (coefficient * optax.softmax_cross_entropy_with_integer_labels(
          logits.astype(jnp.float32), labels)).sum()
    return jax.grad(loss)(params)

  @jax.jit
  def curvature_batch(params, model_state, moments, batch, count, v):
    """AdaHessian moments after one coreset batch of `count` real rows (the rest weight 0)."""
    def loss(p):
      logits = forward(p, model_state, batch["input"], train=True)[0]
      per_row = optax.softmax_cross_entropy_with_integer_labels(
          logits.astype(jnp.float32), batch["label"])
      return (per_row * batch["weight"]).sum() / count
    grad, diagonal = crest_lib.hessian_diagonal_sample(loss, params, v)
    (m, v, k), g, h = crest_lib.hutchinson_moments(
        (moments["m"], moments["v"], moments["count"]), grad, diagonal)
    return {"m": m, "v": v, "count": k}, g, h, loss(params), optax.global_norm(h)

  quadratic_value = jax.jit(crest_lib.quadratic_value)

  def read(rows):
    return data.train.read(np.asarray(rows))

  def per_row_losses(state, rows):
    """(logits, losses) of `rows` at the current weights, in chunks of _CHUNK rows."""
    examples = read(rows)
    logits = []
    for start in range(0, len(rows), _CHUNK):
      part = examples["input"][start:start + _CHUNK]
      padded = np.zeros((_CHUNK, *part.shape[1:]), part.dtype)
      padded[:len(part)] = part
      logits.append(np.asarray(logits_of(state["params"], state["model_state"],
                                         padded))[:len(part)])
    logits = np.concatenate(logits)
    losses = np.asarray(optax.softmax_cross_entropy_with_integer_labels(
        jnp.asarray(logits), jnp.asarray(examples["label"])))
    return logits, losses

  def quadratic_model(state, crest, rows, weights, step):
    """L_0, g, h over shuffled coreset batches (CREST `_get_quadratic_approximation`)."""
    rng = np.random.default_rng([config.seed, step, 2])
    order = rng.permutation(len(rows))
    moments = crest["moments"]
    total_g = total_h = None
    total_loss, norms = 0.0, []
    for start in range(0, len(rows), batch_size):
      part = order[start:start + batch_size]
      examples = read(rows[part])
      pad = batch_size - len(part)
      batch = {"input": np.concatenate([examples["input"],
                                        np.zeros((pad, *examples["input"].shape[1:]),
                                                 examples["input"].dtype)]),
               "label": np.concatenate([examples["label"], np.zeros(pad, np.int32)]),
               "weight": np.concatenate([weights[part], np.zeros(pad)]).astype(np.float32)}
      v = crest_lib.rademacher(rng, state["params"])
      moments, g, h, loss, norm = curvature_batch(state["params"], state["model_state"],
                                                  moments, batch, float(len(part)), v)
      scale = float(len(part))
      total_g = jax.tree.map(lambda x: x * scale, g) if total_g is None else jax.tree.map(
          lambda a, x: a + x * scale, total_g, g)
      total_h = jax.tree.map(lambda x: x * scale, h) if total_h is None else jax.tree.map(
          lambda a, x: a + x * scale, total_h, h)
      total_loss += float(loss) * scale
      norms.append(float(norm))
    crest["moments"] = moments
    crest["gradient"] = jax.tree.map(lambda x: x / len(rows), total_g)
    crest["curvature"] = jax.tree.map(lambda x: x / len(rows), total_h)
    crest["start_loss"] = np.float32(total_loss / len(rows))
    crest["delta"] = jax.tree.map(jnp.zeros_like, crest["delta"])
    return float(np.mean(norms))

  def gradient_errors(state, subset, picked, weights, rng):
    """Relative errors of the weighted coreset gradient and of a random batch of its size."""
    n, k = len(subset), len(picked)
    grad = lambda rows, coefficient: mean_gradient(
        state["params"], state["model_state"], read(rows)["input"], labels[rows],
        coefficient.astype(np.float32))
    full = grad(subset, np.full(n, 1.0 / n))
    coreset = grad(picked, weights / k)
    random = grad(rng.choice(subset, k, replace=False), np.full(k, 1.0 / k))
    norm = float(optax.global_norm(full))
    error = lambda estimate: float(optax.global_norm(
        jax.tree.map(lambda a, b: a - b, full, estimate))) / max(norm, 1e-30)
    return error(coreset), error(random)

  def selection(state, crest, info, step):
    """New random subsets, their coresets (or random rows), order and quadratic model."""
    rng = np.random.default_rng([config.seed, step])
    pool = np.asarray(crest["pool"])
    num_subsets = int(info["num_coresets"])
    subsets = crest_lib.class_balanced_subsets(rng, labels, pool, num_subsets,
                                               size["subset_per_class"])
    flat = subsets.ravel()
    logits, losses = per_row_losses(state, flat)
    if opts["drop_learned"]:
      epoch = step // size["steps_per_epoch"]
      watch = np.asarray(crest["watch"]).copy()
      watch[epoch % opts["watch_interval"], flat] = losses
      crest["watch"] = watch
      if (epoch + 1) % opts["drop_interval"] == 0:
        crest["pool"] = crest_lib.rebuild_pool(watch, labels, pool, size["subset_per_class"],
                                               opts["drop_thresh"], min_pool)
    if method == "random":
      picked = np.concatenate([
          np.concatenate([rng.choice(subset[labels[subset] == c], min(
              size["coreset_per_class"], int((labels[subset] == c).sum())), replace=False)
                          for c in range(num_classes)]) for subset in subsets])
      weights = np.ones(len(picked))
    else:
      features = np.asarray(crest_lib.last_layer_gradients(logits, labels[flat]))
      picked, weights = crest_lib.mini_batch_coresets(features, labels[flat], subsets,
                                                      size["coreset_per_class"])
    loss_of = dict(zip(flat.tolist(), losses.tolist()))
    crest["selected_loss_ratio"] = np.float32(
        np.mean([loss_of[i] for i in picked.tolist()]) / max(losses.mean(), 1e-30))
    if opts["measure_gradient_error"]:
      first = np.isin(picked, subsets[0])
      coreset_weights = weights[first] * first.sum() / weights[first].sum()
      crest["grad_error_coreset"], crest["grad_error_random"] = map(
          np.float32, gradient_errors(state, subsets[0], picked[first], coreset_weights, rng))
    rows = len(picked)
    crest["coreset"] = np.pad(picked, (0, size["max_coreset"] - rows)).astype(np.int32)
    crest["weight"] = np.pad(weights, (0, size["max_coreset"] - rows)).astype(np.float32)
    crest["order"] = np.pad(rng.permutation(rows), (0, size["max_coreset"] - rows)).astype(
        np.int32)
    crest["coreset_size"], crest["cursor"] = np.int32(rows), np.int32(0)
    crest["subsets"] = np.pad(subsets, ((0, size["max_subsets"] - num_subsets), (0, 0))).astype(
        np.int32)
    crest["num_subsets"] = np.int32(num_subsets)
    if method == "crest":
      norm = quadratic_model(state, crest, picked, weights, step)
      if int(info["selections"]) == 0:
        crest["initial_norm"] = np.float32(norm)
      else:
        interval, coresets = crest_lib.adapted_schedule(
            float(crest["initial_norm"]), norm, opts["interval_mul"], opts["batch_num_mul"],
            size["steps_per_epoch"])
        crest["check_interval"], crest["num_coresets"] = np.int32(interval), np.int32(coresets)
    crest["selections"] = np.int32(int(info["selections"]) + 1)

  def check_region(state, crest, info):
    """|L_true - F(delta)| / L_true on the random subsets (CREST `_check_approx_error`)."""
    subsets = np.asarray(crest["subsets"])[:int(info["num_subsets"])].ravel()
    true_loss = float(per_row_losses(state, subsets)[1].mean())
    approx = float(quadratic_value(crest["start_loss"], crest["gradient"], crest["curvature"],
                                   crest["delta"]))
    crest["checks"] = np.int32(int(info["checks"]) + 1)
    crest["approx_error"] = np.float32(abs(true_loss - approx) / max(true_loss, 1e-30))
    return crest_lib.outside_region(true_loss, approx, opts["check_thresh_factor"])

  def next_rows(crest, step):
    """The next B rows of the shuffled coreset, reshuffled when a pass ends."""
    rows, cursor = int(crest["coreset_size"]), int(crest["cursor"])
    order = np.asarray(crest["order"])[:rows]
    taken, passes = [], 0
    while sum(map(len, taken)) < batch_size:
      take = min(batch_size - sum(map(len, taken)), rows - cursor)
      taken.append(order[cursor:cursor + take])
      cursor += take
      if cursor == rows:
        passes += 1
        order = np.random.default_rng([config.seed, step, 1, passes]).permutation(rows)
        cursor = 0
        crest["order"] = np.pad(order, (0, size["max_coreset"] - rows)).astype(np.int32)
    crest["cursor"] = np.int32(cursor)
    positions = np.concatenate(taken)
    return {"index": np.asarray(crest["coreset"])[positions],
            "weight": np.asarray(crest["weight"])[positions]}

  def select(state, candidates):
    info = jax.device_get({"step": state["step"],
                           **{name: state["crest"][name] for name in _SCALARS}})
    step = int(info["step"])
    if step < size["steps_per_epoch"]:  # Warm start: the trainer's shuffled rows.
      return state, {"index": candidates, "weight": np.ones(len(candidates), np.float32)}
    old = state["crest"]
    crest = dict(old)
    reset_step = int(info["reset_step"])
    since = step - reset_step
    if method == "crest" and since > 0 and since % int(info["check_interval"]) == 0:
      if check_region(state, crest, info):
        reset_step = step
    elif method in ("coreset", "random") and since >= opts["reselect_interval"]:
      reset_step = step
    if step == reset_step and not (method == "craig" and int(info["selections"]) > 0):
      selection(state, crest, info, step)
    crest["reset_step"] = np.int32(reset_step)
    rows = next_rows(crest, step)
    crest = jax.tree.map(lambda new, like: jax.device_put(new, like.sharding), crest, old)
    return {**state, "crest": crest}, rows

  def eval_step(state, batch):
    logits, _ = forward(state["params"], state["model_state"], batch["input"], train=False)
    loss, correct = cross_entropy_and_accuracy(logits, batch["label"], batch["mask"])
    return {"loss": loss.sum(), "accuracy": correct.sum(), "count": batch["mask"].sum()}

  evaluators = single_model.evaluators(
      config, data, mesh, eval_step,
      initial_params=lambda: model_init(jax.random.key(config.seed))["params"])
  return Task(init=init, train_step=train_step, evaluators=evaluators,
              select=None if method == "full" else select)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates model, optimizer, batch (fixed size, no candidate pool), evaluators and
  `config.crest`."""
  single_model.check(checker, mesh_sizes, batch_sizes, models.CLASSIFIERS)
  batch = checker.section("batch")
  if batch.node.get("schedule"):
    batch.fail("schedule", "must be empty: CREST trains on batches of config.batch.size rows")
  if batch.node.get("pool_size") is not None:
    batch.fail("pool_size", "must be unset: CREST draws its own random subsets")
  top = checker.section()
  if not top.has("crest"):
    return
  section = checker.section("crest")
  section.one_of("method", METHODS, default=DEFAULTS["method"])
  for name in ("train_frac", "random_subset_size"):
    value = section.positive(name, default=DEFAULTS[name])
    if value > 1:
      section.fail(name, "must be a fraction of the training set, at most 1")
  for name in ("num_minibatch_coreset", "watch_interval", "drop_interval"):
    section.positive(name, default=DEFAULTS[name], integer=True)
  if section.read("reselect_interval", default=None) is not None:
    section.positive("reselect_interval", integer=True)
  for name in ("check_thresh_factor", "interval_mul", "batch_num_mul"):
    section.positive(name, default=DEFAULTS[name])
  section.non_negative("drop_thresh", default=DEFAULTS["drop_thresh"])
  fraction = section.non_negative("min_pool_fraction", default=DEFAULTS["min_pool_fraction"])
  if fraction > 1:
    section.fail("min_pool_fraction", "must be at most 1")
  section.boolean("drop_learned", default=False)
  section.boolean("measure_gradient_error", default=True)
  section.reject_unread(f"crest fields: {', '.join(DEFAULTS)}")
