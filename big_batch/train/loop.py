"""The canonical trainer: config -> sharded state, jitted donated step, metrics, evals, checkpoints.

Nothing here knows about a paper: the task (what a step computes), the optimizer, the model,
the data set and the mesh all come from the config. Read top to bottom; sections are marked.
"""
import json
import math
import os
import signal
import time

import jax
import numpy as np
from absl import logging

from big_batch import optim, tasks
from big_batch.data import datasets, pipeline
from big_batch.optim import schedules
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib
from big_batch.train import metrics as metrics_lib
from big_batch.train.checkpoint import Checkpointer
from big_batch.train.plots import plot_curves
from big_batch.train.validate import validate


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


class _PreemptionFlag:
  """Set by SIGTERM; the loop checkpoints and stops at the next step boundary."""

  def __init__(self):
    self.raised = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def restore(self):
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


def evaluate(eval_step, state, split, config, batch_sharding) -> dict:
  """Mean eval metrics over the whole split (padded examples masked out)."""
  sums = None
  for batch in pipeline.eval_batches(split, batch_size=config.batch.eval_size,
                                     sharding=batch_sharding):
    out = eval_step(state, batch)
    sums = out if sums is None else jax.tree.map(lambda a, b: a + b, sums, out)
  sums = jax.device_get(sums)
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
  data = datasets.load(config.data)
  total_steps = total_steps_of(config, data.train.num_examples)

  # --- Task, optimizer and sharded state -----------------------------------------------------
  schedule = schedules.from_config(config.optimizer, total_steps)
  tx = optim.build(config.optimizer, total_steps)
  task = tasks.build(config, data, tx, schedule)
  rng = jax.random.key(config.seed)
  abstract_state = jax.eval_shape(task.init, rng)
  state_sharding = sharding_lib.state_shardings(
      abstract_state, mesh, config.get("sharding", "replicated"),
      config.get("sharding_rules", ()))
  abstract_state = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state,
      state_sharding)

  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
  start_step, state = checkpointer.restore_latest(abstract_state)
  if state is None:
    start_step = 0
    state = jax.jit(task.init, out_shardings=state_sharding)(rng)
  else:
    print(f"Resumed from the checkpoint at step {start_step} in {workdir}", flush=True)

  # --- Jitted steps: the train step donates the state it is given --------------------------
  replicated = sharding_lib.replicated(mesh)
  train_step = jax.jit(task.train_step, in_shardings=(state_sharding, batch_sharding),
                       out_shardings=(state_sharding, replicated), donate_argnums=0)
  eval_step = jax.jit(task.eval_step, in_shardings=(state_sharding, batch_sharding),
                      out_shardings=replicated)

  # --- Train loop -----------------------------------------------------------------------------
  writer = metrics_lib.MetricWriter(workdir, resume_step=start_step if start_step else None)
  progress = metrics_lib.Progress(total_steps, config.batch.size, start_step)
  preemption = _PreemptionFlag()
  batches = pipeline.train_batches(data.train, batch_size=config.batch.size, seed=config.seed,
                                   start_step=start_step, num_steps=total_steps,
                                   sharding=batch_sharding)
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
          writer.write(step, train_scalars, "train")
          if jax.process_index() == 0:
            print(progress.line(step, train_scalars), flush=True)
          pending_steps, pending_metrics = [], []

        if step % config.eval_every == 0 or is_last:
          eval_scalars = evaluate(eval_step, state, data.test, config, batch_sharding)
          writer.write(step, eval_scalars, "eval")
          if jax.process_index() == 0:
            print(f"eval at step {step}: " + " ".join(
                f"{k}={v:.4f}" for k, v in eval_scalars.items()), flush=True)

        if step % config.checkpoint_every == 0 or is_last or preemption.raised:
          check_finite()
          checkpointer.save(step, state)
          last_saved = step
        if preemption.raised:
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
