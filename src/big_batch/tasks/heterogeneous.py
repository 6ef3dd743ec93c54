"""Supervised training on devices of unequal speed: Cephalo's compute distribution in SPMD.

Guo, Anand, Chen & Daudjee (ICS 2025): device i trains on its own share b_i of the global
batch, in g_i micro-batches, and the gradient is the sample-weighted combination that makes
the update that of homogeneous large-batch SGD on the B examples (parallel/heterogeneous.py,
Eq. 1). The split comes from `config.heterogeneous`, which the planner
(`python -m big_batch.parallel.planner --profiles F --batch B`) prints:

  rows         b_i per device of the batch axes (sum = config.batch.size), in mesh order
  micro_batch  the rows of one micro-batch, the same on every device (one program)
  slowdown     optional, per device: compute each micro-batch's gradient this many times
               (emulated heterogeneity for tests and benchmarks; the result is unchanged)

`select` lays each step's B stream rows out in padded per-device blocks (weight 0 for the
padding, which the trainer does not count as examples seen); the step loops over each
device's own micro-batches inside `shard_map`. The model must not use batch statistics
(`model.norm='none'`): padding rows would enter them, and the equality with the global-batch
gradient is the point. Evaluation is the supervised task's.
"""
import jax
from flax import nnx

from big_batch import models, optim
from big_batch.checks import ConfigError
from big_batch.parallel import heterogeneous
from big_batch.parallel import mesh as mesh_lib
from big_batch.tasks import single_model, supervised
from big_batch.tasks.common import Task, apply_gradients, nnx_model

# The config section this task owns (validate names it when another task is chosen).
SECTIONS = ("heterogeneous",)


def build(config, data, mesh, total_steps: int) -> Task:
  """Supervised training of `config.model` with the per-device split of `config.heterogeneous`."""
  section = config.heterogeneous
  plan = heterogeneous.layout(section.rows, section.micro_batch)
  slowdown = tuple(section.get("slowdown") or (1,) * len(plan.rows))
  axes = tuple(a for a in mesh_lib.BATCH_AXES if a in mesh.axis_names)
  optimizer = optim.build(config.optimizer, total_steps, batch=config.batch)

  def new_model(rng):
    return models.build(config.model, data.input_shape, data.num_classes, nnx.Rngs(rng))

  graphdef, init = nnx_model(new_model, optimizer.tx)

  def train_step(state, batch):
    model_state = state["model_state"]

    def sum_fn(params, micro_batch):
      model = nnx.merge(graphdef, params, model_state)
      model.train()
      loss, correct = supervised.cross_entropy_and_accuracy(
          model(micro_batch["input"]), micro_batch["label"], micro_batch["weight"])
      return loss.sum(), {"correct": correct.sum(), "rows": micro_batch["weight"].sum()}

    (loss_sum, sums), grad_sums = heterogeneous.accumulated_sums(
        sum_fn, state["params"], batch, plan, mesh, axes, slowdown)
    grads = jax.tree.map(lambda g: g / plan.global_batch, grad_sums)
    params, opt_state, norms = apply_gradients(optimizer, state["params"], state["opt_state"],
                                               grads, state["step"])
    metrics = {**norms, "loss": loss_sum / plan.global_batch,
               "accuracy": sums["correct"] / plan.global_batch, "rows": sums["rows"]}
    return {**state, "step": state["step"] + 1, "params": params,
            "opt_state": opt_state}, metrics

  def select(state, candidates):
    return state, heterogeneous.arrange(candidates, plan)

  evaluators = supervised.build(config, data, mesh, total_steps).evaluators
  return Task(init=init, train_step=train_step, evaluators=evaluators, select=select,
              batch_axes=axes)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates the supervised fields and `config.heterogeneous` against the batch and mesh."""
  single_model.check(checker, mesh_sizes, batch_sizes, models.CLASSIFIERS)
  norm = checker.section("model").read("norm", default="none")
  if norm != "none":
    checker.section("model").fail("norm", "must be 'none' for the heterogeneous task "
                                          "(padding rows would enter batch statistics)")
  batch = checker.section("batch")
  for key, default in (("accumulation_steps", 1), ("max_micro_batch", None),
                       ("pool_size", None)):
    if batch.read(key, default=default) != default:
      batch.fail(key, "is set by config.heterogeneous (rows and micro_batch) for this task")
  if len(set(batch_sizes)) > 1:
    raise ConfigError(f"{batch.name('schedule')} changes the batch size "
                      f"({sorted(set(batch_sizes))}); config.heterogeneous.rows fixes one")
  if checker.section().read("sharding", default="replicated") != "replicated":
    checker.section().fail("sharding", "must be 'replicated' for the heterogeneous task (its "
                                       "step keeps the parameters whole on every device)")
  section = checker.section("heterogeneous")
  rows = section.read("rows")
  devices = mesh_lib.shards(mesh_sizes)
  if (not isinstance(rows, (tuple, list)) or
      not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in rows)):
    section.fail("rows", "must be a tuple of positive integers, one per device")
  if len(rows) != devices:
    section.fail("rows", f"has {len(rows)} entries for {devices} devices over the batch axes")
  if sum(rows) != batch_sizes[0]:
    section.fail("rows", f"sums to {sum(rows)}, not config.batch.size={batch_sizes[0]}")
  section.positive("micro_batch", integer=True)
  slowdown = section.read("slowdown", default=None)
  if slowdown is not None and (
      not isinstance(slowdown, (tuple, list)) or len(slowdown) != devices or
      not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in slowdown)):
    section.fail("slowdown", "must be one positive integer per device")
  section.reject_unread("config.heterogeneous takes rows, micro_batch, slowdown")
