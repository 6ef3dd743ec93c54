"""SASRec, CL4SRec, MCLRec and MCLRec-J as one task (`config.task = 'mclrec'`), chosen by
`config.mclrec.method` (Qin et al., SIGIR 2023; QinHsiu/MCLRec).

Losses (recsys/losses.py), with views S1, S2 of each sequence (recsys/augment.py), h_i =
f_theta(S_i) and z_i = w_phi_i(h_i):

  sasrec    L_rec                                       (Kang & McAuley 2018)
  cl4srec   L_rec + lambda L_cl1                        (Xie et al. 2022)
  mclrec    L0 = L_rec + lambda L_cl1 + beta (L_cl2 + R) for theta, L1 = L_cl2 + R for phi,
            the code's three steps per batch (`recbole/trainer/trainer.py::_train_epoch`,
            joint = 0): 1. theta <- Adam(grad_theta L0) with phi fixed; 2. phi <- Adam'(grad_phi
            L1) on a fresh forward under the new theta (lambda L_cl1 of the code's step-2 loss
            has no phi gradient); 3. theta <- Adam(grad_theta L0) with the new phi. Two
            optimizers: `config.optimizer` for theta (two updates per batch), and
            `config.augmenter_optimizer` for phi (one).
  mclrec_j  MCLRec-J (joint = 1): one optimizer (`config.optimizer`) over theta and phi
            minimising L0 (the code's optimizer_2).

`config.mclrec.regularizer` False drops R (the paper's "w/o R"). Fields a method does not use
are ignored (lambda by sasrec, beta by sasrec and cl4srec, `augmenter_optimizer` by all but
mclrec), so one config serves every method. All steps of a batch share
its two views, as the code's loader draws them once per batch; each forward draws its own
dropout. Randomness comes from the key in the state (`state['rng']`), so a resumed run is
the uninterrupted one. Batches are MCLRec's prefix examples (recsys/builder.py): 'history'
[B, N], 'length', 'target'. The batch is not split into micro-batches: the contrastive terms'
in-batch negatives are the batch.

Evaluation (`config.evals.<name>`, kind 'split' over 'validation' or 'test'): full ranking over
all items (recsys/metrics.py), HR@{5,10,20}, NDCG@{5,10,20} and MRR@10 means over the split.
The trainer has no early stopping; `recsys.metrics.early_stopping` applies the code's (MRR@10,
patience 10) to a run's logged validation metrics and picks its test metrics.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from big_batch import optim
from big_batch.checks import ConfigError
from big_batch.recsys import augment, losses, metrics
from big_batch.recsys.sasrec import SASRec, Augmenter
from big_batch.tasks import single_model
from big_batch.tasks.common import Task, apply_gradients

# The config section this task owns (validate names it when another task is chosen).
SECTIONS = ("mclrec",)

METHODS = ("sasrec", "cl4srec", "mclrec", "mclrec_j")
MODELS = {"sasrec": SASRec}


def vocabulary(data) -> tuple[int, int]:
  """(item ids incl. padding 0, max_len) of a seqrec data set: 1 + the largest id in it."""
  largest, max_len = 0, None
  for split in data.splits.values():
    rows = split.read(np.arange(split.num_examples))
    largest = max(largest, int(rows["history"].max()), int(rows["target"].max()))
    max_len = rows["history"].shape[1]
  return largest + 1, max_len


def _defaults(section) -> dict:
  return dict(lmd=section.get("lmd", 0.0), beta=section.get("beta", 0.0),
              tau=section.get("tau", 1.0), regularizer=section.get("regularizer", True),
              ratios=(section.get("crop_ratio", 0.5), section.get("mask_ratio", 0.5),
                      section.get("reorder_ratio", 0.8)))


class Steps(NamedTuple):
  """The task's pure functions: `train_step` composes the others (module docstring)."""
  init: Callable
  train_step: Callable
  encoder_step: Callable  # (state, batch, views, key) -> (state, metrics)
  augmenter_step: Callable  # (state, batch, views, key) -> (state, metrics); mclrec only
  step_inputs: Callable  # (state, batch) -> (next key, views, dropout keys)
  eval_step: Callable


def build_steps(config, data, total_steps: int) -> Steps:
  """The step functions of `config.mclrec.method` on a seqrec data set."""
  method = config.mclrec.method
  settings = _defaults(config.mclrec)
  meta, contrastive = method in ("mclrec", "mclrec_j"), method != "sasrec"
  num_items, max_len = vocabulary(data)
  model_kwargs = {k: v for k, v in config.model.items() if k != "name"}
  encoder_updates = 2 * total_steps if method == "mclrec" else total_steps
  optimizer = optim.build(config.optimizer, encoder_updates, batch=config.batch)
  augmenter_optimizer = (optim.build(config.augmenter_optimizer, total_steps,
                                     batch=config.batch, name="augmenter_optimizer")
                         if method == "mclrec" else None)

  def new_models(rng):
    rngs = nnx.Rngs(rng)
    encoder = SASRec(num_items, max_len, **model_kwargs, rngs=rngs)
    hidden = model_kwargs.get("hidden", 64)
    return encoder, (Augmenter(hidden, rngs=rngs), Augmenter(hidden, rngs=rngs))

  abstract = nnx.eval_shape(lambda: new_models(jax.random.key(0)))
  encoder_def = nnx.graphdef(abstract[0])
  augmenter_def = nnx.graphdef(abstract[1][0])

  def encode(theta, items, lengths, key=None):
    return nnx.merge(encoder_def, theta)(items, lengths, key)

  def scores(theta, h):
    return nnx.merge(encoder_def, theta).scores(h)

  def objective(theta, phi, batch, views, key, for_augmenters=False):
    """(loss, parts): L0 (or L1 with for_augmenters) of one forward with dropout `key`."""
    keys = jax.random.split(key, 3)
    parts = {}
    if not for_augmenters:
      h = encode(theta, batch["history"], batch["length"], keys[0])
      parts["rec"] = losses.recommendation(scores(theta, h), batch["target"]).mean()
    if contrastive:
      h1 = encode(theta, views[0], views[1], keys[1])
      h2 = encode(theta, views[2], views[3], keys[2])
      parts["cl1"] = losses.cl1(h1, h2, settings["tau"])
    if meta:
      z1 = nnx.merge(augmenter_def, phi[0])(h1)
      z2 = nnx.merge(augmenter_def, phi[1])(h2)
      parts["cl2"] = losses.cl2(h1, h2, z1, z2)
      parts["regularizer"] = (losses.regularizer(h1, h2, z1, z2) if settings["regularizer"]
                              else jnp.zeros(()))
    if for_augmenters:
      return parts["cl2"] + parts["regularizer"], parts
    loss = parts["rec"]
    if contrastive:
      loss = loss + settings["lmd"] * parts["cl1"]
    if meta:
      loss = loss + settings["beta"] * (parts["cl2"] + parts["regularizer"])
    return loss, parts

  def encoder_step(state, batch, views, key):
    """One update of theta on L0 with phi fixed (MCLRec-J: of theta and phi together)."""
    theta, phi = state["params"]["encoder"], state["params"].get("augmenters")
    if method == "mclrec_j":
      (loss, parts), grads = jax.value_and_grad(
          lambda p: objective(p["encoder"], p["augmenters"], batch, views, key),
          has_aux=True)(state["params"])
      params, opt_state, norms = apply_gradients(optimizer, state["params"],
                                                 state["opt_state"], grads,
                                                 state["encoder_updates"])
    else:
      (loss, parts), grads = jax.value_and_grad(objective, has_aux=True)(
          theta, phi, batch, views, key)
      theta, opt_state, norms = apply_gradients(optimizer, theta, state["opt_state"], grads,
                                                state["encoder_updates"])
      params = {**state["params"], "encoder": theta}
    return ({**state, "params": params, "opt_state": opt_state,
             "encoder_updates": state["encoder_updates"] + 1}, {**norms, **parts, "loss": loss})

  def augmenter_step(state, batch, views, key):
    """One update of phi on L1 = L_cl2 + R under the current theta (MCLRec's step 2)."""
    theta, phi = state["params"]["encoder"], state["params"]["augmenters"]
    (loss, _), grads = jax.value_and_grad(
        lambda f: objective(theta, f, batch, views, key, for_augmenters=True),
        has_aux=True)(phi)
    phi, opt_state, norms = apply_gradients(augmenter_optimizer, phi,
                                            state["augmenter_opt_state"], grads, state["step"])
    state = {**state, "params": {**state["params"], "augmenters": phi},
             "augmenter_opt_state": opt_state}
    return state, {"augmenter_loss": loss, "augmenter_grad_norm": norms["grad_norm"]}

  def step_inputs(state, batch):
    """(next key, the batch's two views or None, three dropout keys) from the state's key."""
    rng, view_key, *keys = jax.random.split(jax.random.wrap_key_data(state["rng"]), 5)
    views = (augment.two_views(view_key, batch["history"], batch["length"], *settings["ratios"])
             if contrastive else None)
    return rng, views, keys

  def train_step(state, batch):
    """sasrec, cl4srec, mclrec_j: one encoder step; mclrec: steps theta, phi, theta."""
    rng, views, keys = step_inputs(state, batch)
    state, step_metrics = encoder_step(state, batch, views, keys[0])
    if method == "mclrec":
      state, phi_metrics = augmenter_step(state, batch, views, keys[1])
      state, _ = encoder_step(state, batch, views, keys[2])
      step_metrics.update(phi_metrics)
    return {**state, "step": state["step"] + 1, "rng": jax.random.key_data(rng)}, step_metrics

  def init(rng):
    model_key, rng = jax.random.split(rng)
    encoder, augmenters = new_models(model_key)
    params = {"encoder": nnx.state(encoder, nnx.Param).to_pure_dict()}
    if meta:
      params["augmenters"] = tuple(nnx.state(a, nnx.Param).to_pure_dict() for a in augmenters)
    state = {"step": jnp.zeros((), jnp.int32), "encoder_updates": jnp.zeros((), jnp.int32),
             "params": params, "rng": jax.random.key_data(rng)}
    if method == "mclrec_j":
      state["opt_state"] = optimizer.tx.init(params)
    else:
      state["opt_state"] = optimizer.tx.init(params["encoder"])
    if method == "mclrec":
      state["augmenter_opt_state"] = augmenter_optimizer.tx.init(params["augmenters"])
    return state

  def eval_step(state, batch):
    theta = state["params"]["encoder"]
    h = encode(theta, batch["history"], batch["length"])
    rank = metrics.target_rank(scores(theta, h), batch["target"])
    mask = batch["mask"]
    sums = {k: (v * mask).sum() for k, v in metrics.ranking_metrics(rank).items()}
    return {**sums, "count": mask.sum()}

  return Steps(init, train_step, encoder_step, augmenter_step, step_inputs, eval_step)


def build(config, data, mesh, total_steps: int) -> Task:
  """The task of `config.mclrec.method` on a seqrec data set (module docstring)."""
  steps = build_steps(config, data, total_steps)
  evaluators = single_model.evaluators(
      config, data, mesh, steps.eval_step,
      initial_params=lambda: steps.init(jax.random.key(config.seed))["params"])
  return Task(init=steps.init, train_step=steps.train_step, evaluators=evaluators)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates model, optimizers, batch, evals and `config.mclrec`."""
  single_model.check(checker, mesh_sizes, batch_sizes, MODELS)
  batch = checker.section("batch")
  if batch.read("accumulation_steps", default=1) != 1:
    batch.fail("accumulation_steps", "must be 1: the contrastive terms' in-batch negatives "
                                     "are the whole batch")
  if batch.read("max_micro_batch", default=None) is not None:
    batch.fail("max_micro_batch", "must be unset: the contrastive terms' in-batch negatives "
                                  "are the whole batch")
  if min(batch_sizes) < 2:
    raise ConfigError(f"config.batch.size={min(batch_sizes)}: the contrastive losses need "
                      "at least 2 sequences per batch")
  section = checker.section("mclrec")
  method = section.one_of("method", METHODS)
  section.non_negative("lmd", default=0.0)
  section.non_negative("beta", default=0.0)
  section.positive("tau", default=1.0)
  # crop keeps floor((1 - crop_ratio) n) >= 1 items of every sequence of length n >= 2.
  for key, default, top in (("crop_ratio", 0.5, 0.5), ("mask_ratio", 0.5, 1.0),
                            ("reorder_ratio", 0.8, 1.0)):
    value = section.read(key, default=default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
      section.fail(key, f"must be a number in [0, {top}]")
  section.boolean("regularizer", default=True)
  section.reject_unread("config.mclrec takes method, lmd, beta, tau, crop_ratio, mask_ratio, "
                        "reorder_ratio, regularizer")
  top = checker.section()
  if method == "mclrec" or top.has("augmenter_optimizer"):
    optim.check(checker.section("augmenter_optimizer"))
