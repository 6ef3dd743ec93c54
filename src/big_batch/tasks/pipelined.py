"""Fine-grained Pipelined Backpropagation, simulated: per-stage delays, SC and LWP (Kosson et al.).

Kosson et al. 2021 (arXiv 2003.11666; parallelism.md §10): with one layer per pipeline
stage and the pipeline never drained, stage s (0-based, S stages) applies the gradient of a
sample whose forward pass it ran D_s = stage_delay * (S - 1 - s) updates earlier
(stage_delay 2: a sample goes through the later stages and comes back), and its backward
pass runs on the current weights. One step here simulates that on the current batch:

  forward of stage s:   w_fwd_s = the forward weights of D_s updates ago (a ring buffer per
                        stage in the state; the initial weights while the pipeline fills);
  backward of stage s:  the current weights w_s, through the activations of that forward
                        (the weight inconsistency), and the gradient is applied now.

A real pipeline also offsets each later stage s' by the s' - s steps the sample spends
between them [derived here, not checked against the paper]; that offset is left out, so
every stage's weights have the same age for every stage's gradient. `pipelined.weights =
'stale'` models staleness without inconsistency instead: the gradient at the current (or
predicted) weights, applied D_s steps late (`optim.delayed.delayed`).

Compensation: `spike_compensation` makes the update lr (a v + b g), a = m^D_s, b = (1 -
m^D_s)/(1 - m) per stage; `weight_prediction` (LWP) stores as forward weights
w + D_s (w - w_prev), the weights D_s updates ahead extrapolated from the last update (for
momentum SGD w - lr D_s v; with SC the last update holds the spike, which the velocity form
misses: on the quadratic of tests/optim/test_delayed.py, lr 0.0015, SC+LWP ends 1% above
the undelayed loss in this form and 25x above it in the velocity form). The model is a CNN
whose stages (conv, group norm, ReLU) and head are the pipeline's stages; group norm,
unlike batch norm, works at batch size 1.

`config.pipelined`: stage_delay (default 2; 0 is synchronous SGD), weights ('pipelined' or
'stale'), spike_compensation, weight_prediction (bools, default False). `config.optimizer`
is 'sgd' (momentum, weight_decay; no Nesterov). Batch-size rules for momentum and learning
rate: `scaling/momentum_scaling.py`.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from big_batch import optim
from big_batch.optim import delayed as delayed_lib
from big_batch.tasks import single_model
from big_batch.tasks.common import Task, apply_gradients
from big_batch.tasks.supervised import cross_entropy_and_accuracy

# The config section this task owns (validate names it when another task is chosen).
SECTIONS = ("pipelined",)

WEIGHT_MODELS = ("pipelined", "stale")


class ConvStage(nnx.Module):
  """Conv (no bias: the norm removes it), group norm, ReLU: one pipeline stage."""

  def __init__(self, in_channels: int, out_channels: int, kernel: int, groups: int,
               rngs: nnx.Rngs):
    self.conv = nnx.Conv(in_channels, out_channels, kernel_size=(kernel,), strides=(2,),
                         padding=((1, 1),), use_bias=False, rngs=rngs)
    self.norm = nnx.GroupNorm(out_channels, num_groups=groups, rngs=rngs)

  def __call__(self, x):
    return nnx.relu(self.norm(self.conv(x)))


class HeadStage(nnx.Module):
  """Flatten and a dense classifier: the last stage."""

  def __init__(self, features: int, num_classes: int, rngs: nnx.Rngs):
    self.dense = nnx.Linear(features, num_classes, rngs=rngs)

  def __call__(self, x):
    return self.dense(x.reshape(x.shape[0], -1))


class StagedCNN(nnx.Module):
  """A 1-D CNN with group norm as a list of pipeline stages: convs (k=5 then 3, stride 2), head.

  The mnist1d ConvBase shape (models/cnn1d.py) with GroupNorm (Wu & He 2018) for batch 1.
  """

  def __init__(self, input_shape: Sequence[int], num_classes: int, *,
               channels: Sequence[int] = (32, 32, 32, 32), groups: int = 4, rngs: nnx.Rngs):
    length = input_shape[0]
    in_channels = input_shape[1] if len(input_shape) > 1 else 1
    stages = []
    for i, out_channels in enumerate(channels):
      kernel = 5 if i == 0 else 3
      stages.append(ConvStage(in_channels, out_channels, kernel, groups, rngs))
      length = (length + 2 - kernel) // 2 + 1
      in_channels = out_channels
    stages.append(HeadStage(length * in_channels, num_classes, rngs))
    self.stages = nnx.List(stages)

  def __call__(self, x):
    if x.ndim == 2:
      x = x[..., None]
    for stage in self.stages:
      x = stage(x)
    return x


MODELS = {"staged_cnn": StagedCNN}


def stage_delays(num_stages: int, stage_delay: int = 2) -> list[int]:
  """D_s = stage_delay (S - 1 - s): the updates between stage s's forward pass and its update.

  Kosson et al. 2021 (parallelism.md §10.2: D_s ~ 2(S - s), 1-based): the first stage waits
  for the sample to cross the S - 1 later stages twice; the last applies its gradient at once.
  """
  return [stage_delay * (num_stages - 1 - s) for s in range(num_stages)]


def delays_like(params, delays: Sequence[int]):
  """The per-leaf delay pytree of `params` ({'stages': {s: ...}}): D_s for each leaf of stage s."""
  return {"stages": {s: jax.tree.map(lambda _, d=delays[s]: d, p)
                     for s, p in params["stages"].items()}}


def inconsistent(apply, forward_weights, backward_weights, x):
  """apply(forward_weights, x) in value; the vector-Jacobian product of apply(backward_weights, .).

  The forward/backward weight inconsistency of pipelined backpropagation: the output is the
  forward pass with old weights, the gradient (to the weights and to x) the backward pass
  with the current weights at the same input activations.
  """
  current = apply(backward_weights, x)
  return current + jax.lax.stop_gradient(apply(forward_weights, x) - current)


def build(config, data, mesh, total_steps: int) -> Task:
  """The simulated pipelined-backprop classification task on `data`."""
  pipe = config.get("pipelined", {})
  weight_model = pipe.get("weights", "pipelined")
  use_sc = pipe.get("spike_compensation", False)
  use_lwp = pipe.get("weight_prediction", False)
  kwargs = {k: v for k, v in config.model.items() if k != "name"}

  def new_model(rng):
    return MODELS[config.model.name](tuple(data.input_shape), data.num_classes, **kwargs,
                                     rngs=nnx.Rngs(rng))

  abstract = nnx.eval_shape(lambda: new_model(jax.random.key(0)))
  graphdefs = [nnx.split(stage, nnx.Param)[0] for stage in abstract.stages]
  num_stages = len(graphdefs)
  delays = stage_delays(num_stages, pipe.get("stage_delay", 2))
  abstract_params = nnx.split(abstract, nnx.Param)[1].to_pure_dict()
  leaf_delays = delays_like(abstract_params, delays)
  delayed_stages = [s for s in range(num_stages) if delays[s] > 0]

  schedule = optim.build(config.optimizer, total_steps, batch=config.batch).learning_rate
  momentum = config.optimizer.get("momentum", 0.9)
  tx = delayed_lib.sgd_spike_compensation(schedule, momentum, leaf_delays if use_sc else 0,
                                          config.optimizer.get("weight_decay", 0.0))
  if weight_model == "stale":
    tx = delayed_lib.delayed(tx, leaf_delays)
  tx = optax.chain(tx, delayed_lib.linear_weight_prediction(leaf_delays))
  optimizer = optim.Optimizer(tx, schedule)

  def apply_stage(s, weights, x):
    return nnx.merge(graphdefs[s], weights)(x)

  def logits_of(forward, backward, inputs):
    x = inputs[..., None] if inputs.ndim == 2 else inputs
    for s in range(num_stages):
      if forward is None or s not in forward["stages"]:
        x = apply_stage(s, backward["stages"][s], x)
      else:
        x = inconsistent(lambda w, x, s=s: apply_stage(s, w, x), forward["stages"][s],
                         backward["stages"][s], x)
    return x

  def forward_weights_of(params, opt_state):
    """What stage s's forward pass will use D_s steps from now: w, or w + D_s (w - w_prev)."""
    if not use_lwp:
      return params
    return delayed_lib.predict_weights(params, opt_state[-1], leaf_delays)

  def init(rng):
    params = nnx.split(new_model(rng), nnx.Param)[1].to_pure_dict()
    opt_state = tx.init(params)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": opt_state,
             "model_state": {}}
    if weight_model == "pipelined":
      state["forward_weights"] = {
          s: jax.tree.map(lambda w, d=delays[s]: jnp.broadcast_to(w, (d, *w.shape)),
                          params["stages"][s]) for s in delayed_stages}
    return state

  def train_step(state, batch):
    step, params = state["step"], state["params"]
    if weight_model == "pipelined":
      ring = state["forward_weights"]
      forward = {"stages": {s: jax.tree.map(lambda r, d=delays[s]: r[step % d], ring[s])
                            for s in delayed_stages}}
      evaluate_at = params
    else:
      forward = None
      evaluate_at = forward_weights_of(params, state["opt_state"])

    def loss_fn(backward):
      logits = logits_of(forward, backward, batch["input"])
      loss, correct = cross_entropy_and_accuracy(logits, batch["label"])
      return loss.mean(), correct.mean()

    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(evaluate_at)
    params, opt_state, metrics = apply_gradients(optimizer, params, state["opt_state"], grads,
                                                 step)
    new_state = {**state, "step": step + 1, "params": params, "opt_state": opt_state}
    if weight_model == "pipelined":
      # Read at step t + D_s: w_t, or LWP's w_t + D_s (w_t - w_{t-1}), D_s steps ahead.
      ahead = forward_weights_of(state["params"], state["opt_state"])["stages"]
      new_state["forward_weights"] = {
          s: jax.tree.map(lambda r, w, d=delays[s]: r.at[step % d].set(w), ring[s], ahead[s])
          for s in delayed_stages}
    return new_state, {**metrics, "loss": loss, "accuracy": accuracy}

  def eval_step(state, batch):
    logits = logits_of(None, state["params"], batch["input"])
    loss, correct = cross_entropy_and_accuracy(logits, batch["label"])
    mask = batch["mask"]
    return {"loss": (loss * mask).sum(), "accuracy": (correct * mask).sum(),
            "count": mask.sum()}

  evaluators = single_model.evaluators(
      config, data, mesh, eval_step,
      initial_params=lambda: init(jax.random.key(config.seed))["params"])
  return Task(init=init, train_step=train_step, evaluators=evaluators)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates the model (staged_cnn, groups dividing every width), the optimizer (momentum
  SGD without Nesterov), batch, evaluators and `config.pipelined`."""
  optimizer = checker.section("optimizer")
  if optimizer.node.get("name") != "sgd":
    optimizer.fail("name", "is not 'sgd': pipelined backprop's SC and LWP are defined for "
                           "momentum SGD")
  single_model.check(checker, mesh_sizes, batch_sizes, MODELS)
  model = checker.section("model")
  groups = model.node.get("groups", 4)
  for width in model.node.get("channels", (32, 32, 32, 32)):
    if groups <= 0 or width % groups:
      model.fail("groups", f"={groups} must be positive and divide every channel width, "
                           f"not {width}")
  if optimizer.node.get("nesterov", False):
    optimizer.fail("nesterov", "must be False: SC and LWP assume heavy-ball momentum")
  momentum = optimizer.node.get("momentum", 0.9)
  if not 0.0 <= momentum < 1.0:
    optimizer.fail("momentum", f"={momentum!r} must be in [0, 1)")
  if optimizer.node.get("weight_decay_mask") is not None:
    optimizer.fail("weight_decay_mask", "is not supported by the pipelined task")
  pipe = checker.section().section("pipelined")
  pipe.non_negative("stage_delay", default=2, integer=True)
  pipe.one_of("weights", WEIGHT_MODELS, default="pipelined")
  pipe.boolean("spike_compensation", default=False)
  pipe.boolean("weight_prediction", default=False)
  pipe.reject_unread("pipelined fields: stage_delay, weights, spike_compensation, "
                     "weight_prediction")
