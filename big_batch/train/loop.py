"""The canonical trainer: config -> sharded state, jitted donated step, metrics, evals, checkpoints.

Nothing here knows about a paper: the task (what a step computes), the optimizer, the model,
the data set and the mesh all come from the config. Read top to bottom; sections are marked.
"""
import json
import os
import signal
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from big_batch import optim, tasks
from big_batch.data import datasets, pipeline
from big_batch.optim import schedules
from big_batch.parallel import distributed
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib
from big_batch.scaling.learning_rate import scale_learning_rate
from big_batch.scaling.weight_distance import weight_distance
from big_batch.train import metrics as metrics_lib
from big_batch.train.checkpoint import Checkpointer
from big_batch.train.plots import plot_curves
from big_batch.train.validate import validate


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


class _PreemptionFlag:
  """Set by SIGTERM; the loop checkpoints and stops at the next step boundary.

  With several processes, a SIGTERM to any one of them stops all at the same step: the
  preemption sync service that `jax.distributed.initialize` installs catches SIGTERM and
  agrees on a step with the others, so no Python handler may replace its own.
  """

  def __init__(self):
    self.raised = False
    self._synced = jax.process_count() > 1
    if not self._synced:
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def check(self, step: int) -> bool:
    """Whether to checkpoint and stop after `step`; with several processes, call every step."""
    if self._synced and not self.raised:
      self.raised = multihost_utils.reached_preemption_sync_point(step)
    return self.raised

  def restore(self):
    if not self._synced:
      signal.signal(signal.SIGTERM, self._previous)


def prepare_workdir(workdir: str) -> None:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir!r} is a file, not a directory")
  os.makedirs(workdir, exist_ok=True)


def total_steps_of(config, num_train_examples: int) -> int:
  if config.get("num_steps") is not None:
    return int(config.num_steps)
  return int(config.num_epochs * num_train_examples // config.batch.size)


def _first_non_finite(steps: list[int], metrics: list[dict]) -> int | None:
  losses = jax.device_get([m["loss"] for m in metrics])
  for step, loss in zip(steps, losses):
    if not np.isfinite(loss):
      return step
  return None


def optimizer_config(config):
  """A copy of `config.optimizer` whose peak learning rate is scaled to `config.batch.size`.

    lr = learning_rate * B / B0        (batch.lr_scaling='linear', Goyal et al. 2017)
    lr = learning_rate * sqrt(B / B0)  (batch.lr_scaling='sqrt', Hoffer et al. 2017)
  with B0 = batch.base_size, the batch `learning_rate` was tuned at. The run's config stays
  as given (it is locked and is what `config.json` records).
  """
  optimizer = config.optimizer.copy_and_resolve_references()
  optimizer.learning_rate = scale_learning_rate(
      optimizer.learning_rate, config.batch.get("base_size", config.batch.size),
      config.batch.size, config.batch.get("lr_scaling", "none"))
  return optimizer


class Setup(NamedTuple):
  """A task on a mesh: its state shardings and jitted init (rng -> sharded state) and steps."""
  task: tasks.Task
  state_sharding: Any
  init: Callable
  train_step: Callable
  eval_step: Callable


def setup(config, mesh, data, total_steps: int) -> Setup:
  """The task, optimizer and state shardings of `config` on `mesh`, and its jitted steps.

  The train step donates the state it is given; state and batch shardings are pinned by the
  jit in/out shardings, and the partitioner propagates them through the step.
  """
  optimizer = optimizer_config(config)
  schedule = schedules.from_config(optimizer, total_steps)
  task = tasks.build(config, data, optim.build(optimizer, total_steps), schedule)
  state_sharding = sharding_lib.state_shardings(
      jax.eval_shape(task.init, jax.random.key(0)), mesh, config.get("sharding", "replicated"),
      config.get("sharding_rules", ()))
  batch_sharding = sharding_lib.batch_sharding(mesh)
  replicated = sharding_lib.replicated(mesh)
  return Setup(
      task=task,
      state_sharding=state_sharding,
      init=jax.jit(task.init, out_shardings=state_sharding),
      train_step=jax.jit(task.train_step, in_shardings=(state_sharding, batch_sharding),
                         out_shardings=(state_sharding, replicated), donate_argnums=0),
      eval_step=jax.jit(task.eval_step, in_shardings=(state_sharding, batch_sharding),
                        out_shardings=replicated))


def distance_from_init(task, state_sharding, rng, mesh) -> Callable[[Any], dict]:
  """params -> {'weight_distance': ||w - w_0||, 'weight_distance/<path>': ||w_i - w0_i||}.

  The diagnostic of Hoffer et al. 2017, Sec. 3. w_0 is `task.init(rng)`'s params, sharded like
  the params; init is a pure function of rng, so a resumed run measures from the same w_0
  without checkpointing it. A separate jitted function, so steps that do not log pay nothing.
  """
  initial = jax.jit(lambda key: task.init(key)["params"],
                    out_shardings=state_sharding["params"])(rng)
  distance = jax.jit(weight_distance, out_shardings=sharding_lib.replicated(mesh))

  def scalars(params) -> dict:
    total, per_leaf = jax.device_get(distance(params, initial))
    return {"weight_distance": float(total),
            **{f"weight_distance/{path}": float(d) for path, d in per_leaf.items()}}

  return scalars


def evaluate(eval_step, state, split, config, batch_sharding) -> dict:
  """Mean eval metrics over the whole split (padded examples masked out)."""
  sums = None
  for batch in pipeline.eval_batches(split, batch_size=config.batch.eval_size,
                                     sharding=batch_sharding):
    # Summed on the host in float64, exact over any number of batches.
    out = {k: np.float64(v) for k, v in jax.device_get(eval_step(state, batch)).items()}
    sums = out if sums is None else {k: sums[k] + out[k] for k in sums}
  count = sums.pop("count")
  return {k: float(v / count) for k, v in sums.items()}


def run(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming from its latest checkpoint); returns the summary."""
  start_time = time.perf_counter()
  # --- Validate the config and the workdir before anything compiles -----------------------
  validate(config, jax.device_count())
  prepare_workdir(workdir)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  # --- Mesh and data -------------------------------------------------------------------------
  mesh = mesh_lib.create(config.mesh)
  batch_sharding = sharding_lib.batch_sharding(mesh)
  # Offline builders prepare the data set on first use: once, if the processes share a disk.
  data = distributed.process_0_first(lambda: datasets.load(config.data), "load_data")
  total_steps = total_steps_of(config, data.train.num_examples)

  # --- Task, optimizer, sharded state and jitted steps (the train step donates its state) --
  task, state_sharding, init, train_step, eval_step = setup(config, mesh, data, total_steps)
  # On CPU devices XLA deadlocks when too many steps with collectives queue: bound the queue.
  train_step = distributed.bound_in_flight(train_step, done=lambda out: out[1])
  eval_step = distributed.bound_in_flight(eval_step)
  rng = jax.random.key(config.seed)
  abstract_state = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      jax.eval_shape(task.init, rng), state_sharding)

  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
  start_step, state = checkpointer.restore_latest(abstract_state)
  if state is None:
    start_step = 0
    state = init(rng)
  elif jax.process_index() == 0:
    print(f"Resumed from the checkpoint at step {start_step} in {workdir}", flush=True)
  weight_distance_scalars = (distance_from_init(task, state_sharding, rng, mesh)
                             if config.get("log_weight_distance", False) else None)

  # --- Train loop -----------------------------------------------------------------------------
  writer = metrics_lib.MetricWriter(workdir, resume_step=start_step if start_step else None)
  progress = metrics_lib.Progress(total_steps, config.batch.size, start_step)
  preemption = _PreemptionFlag()
  batches = pipeline.train_batches(data.train, batch_size=config.batch.size, seed=config.seed,
                                   start_step=start_step, num_steps=total_steps,
                                   sharding=batch_sharding,
                                   prefetch=0 if config.data.get("in_memory", True)
                                   else config.data.get("prefetch", 4))
  pending_steps, pending_metrics = [], []
  train_scalars, eval_scalars = {}, {}
  last_saved = start_step
  step = start_step
  loop_start = time.perf_counter()

  def check_finite():
    bad = _first_non_finite(pending_steps, pending_metrics)
    if bad is not None:
      checkpointer.close()
      raise NonFiniteLossError(
          f"non-finite training loss at step {bad}; stopping. The last good checkpoint "
          f"(step {last_saved if last_saved else 'none'}) stays in {checkpointer.directory}")

  try:
    with jax.set_mesh(mesh):
      for step in range(start_step + 1, total_steps + 1):
        state, step_metrics = train_step(state, next(batches))
        pending_steps.append(step)
        pending_metrics.append(step_metrics)
        is_last = step == total_steps

        if step % config.log_every == 0 or is_last:
          check_finite()
          train_scalars = metrics_lib.mean_of(pending_metrics)
          train_scalars["examples_per_second"] = progress.examples_per_second(
              len(pending_steps), time.perf_counter() - progress.last_time)
          if weight_distance_scalars is not None:
            train_scalars.update(weight_distance_scalars(state["params"]))
          if jax.process_count() > 1:  # Each process's own rate: a slow host shows here.
            train_scalars.update(
                {f"examples_per_second/process_{i}": rate for i, rate in enumerate(
                    distributed.process_values(train_scalars["examples_per_second"]))})
          writer.write(step, train_scalars, "train")
          line = progress.line(step, train_scalars)  # Every process: it restarts the clock.
          if jax.process_index() == 0:
            print(line, flush=True)
          pending_steps, pending_metrics = [], []

        if step % config.eval_every == 0 or is_last:
          eval_scalars = evaluate(eval_step, state, data.test, config, batch_sharding)
          writer.write(step, eval_scalars, "eval")
          if jax.process_index() == 0:
            print(f"eval at step {step}: " + " ".join(
                f"{k}={v:.4f}" for k, v in eval_scalars.items()), flush=True)

        # preemption.check first: with several processes it must run at every step.
        if preemption.check(step) or step % config.checkpoint_every == 0 or is_last:
          check_finite()
          checkpointer.save(step, state)
          last_saved = step
        if preemption.raised:
          if jax.process_index() == 0:
            print(f"SIGTERM: saved a checkpoint at step {step} in {checkpointer.directory}; "
                  "stopping. Run the same command again to resume.", flush=True)
          break
  finally:
    preemption.restore()
    checkpointer.close()
    writer.close()

  # --- Summary and plots -------------------------------------------------------------------
  train_seconds = time.perf_counter() - loop_start
  summary = {
      "final_step": step,
      "total_steps": total_steps,
      "preempted": preemption.raised and step < total_steps,
      "examples_seen": step * config.batch.size,
      "train": train_scalars,
      "eval": eval_scalars,
      "eval_accuracy": eval_scalars.get("accuracy"),
      "eval_loss": eval_scalars.get("loss"),
      "train_seconds_this_run": train_seconds,
      "wall_time_seconds": time.perf_counter() - start_time,
      "examples_per_second_this_run": (step - start_step) * config.batch.size
                                      / max(train_seconds, 1e-9),
  }
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    plot_curves(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "curves.png"))
    logging.info("summary: %s", summary)
  return summary
