"""The canonical trainer: config -> sharded state, jitted donated step, metrics, evals, checkpoints.

Nothing here knows about a paper. The task (tasks/common.py: what a step computes, its
evaluators, shardings, batch selection and batch size), the model, the optimizers, the data
set and the mesh all come from the config. Read top to bottom; sections are marked.
docs/architecture.md describes the flow.
"""
import json
import signal
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from big_batch import tasks
from big_batch.checks import ConfigError
from big_batch.data import datasets
from big_batch.parallel import distributed
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib
from big_batch.train import init_from
from big_batch.train import metrics as metrics_lib
from big_batch.train import workdir as workdir_lib
from big_batch.train.batch_plan import BatchPlan
from big_batch.train.checkpoint import Checkpointer, StructureMismatchError
from big_batch.train.feed import Feed, Progress
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


def _say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, flush=True)


def _first_non_finite(pending: list) -> int | None:
  losses = jax.device_get([metrics["loss"] for _, metrics, _ in pending])
  for (step, _, _), loss in zip(pending, losses):
    if not np.all(np.isfinite(loss)):
      return step
  return None


def _write_json(path: epath.Path, record: dict) -> None:
  if jax.process_index() == 0:
    path.write_text(json.dumps(record, indent=2))


class Setup(NamedTuple):
  """A task on a mesh: its state's shardings, and its init and train step jitted for them."""
  task: tasks.Task
  abstract_state: Any       # jax.ShapeDtypeStructs with their shardings
  state_sharding: Any
  batch_sharding: Any
  init: Callable            # rng -> sharded state
  train_step: Callable      # (state, batch) -> (state, metrics); donates the state


def setup(config, mesh, task) -> Setup:
  """The state shardings of `task` (its own, or `config.sharding` and `sharding_rules`) and
  its jitted init and train step, whose in/out shardings pin state and batch; the
  partitioner propagates them through the step. The train step donates the state."""
  abstract = jax.eval_shape(task.init, jax.random.key(0))
  if task.shardings is not None:
    state_sharding = task.shardings(abstract, mesh)
  else:
    state_sharding = sharding_lib.state_shardings(
        abstract, mesh, config.get("sharding", "replicated"), config.get("sharding_rules", ()))
  batch_sharding = sharding_lib.batch_sharding(mesh, task.batch_axes)
  return Setup(
      task=task,
      abstract_state=jax.tree.map(
          lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
          state_sharding),
      state_sharding=state_sharding,
      batch_sharding=batch_sharding,
      init=jax.jit(task.init, out_shardings=state_sharding),
      train_step=jax.jit(task.train_step, in_shardings=(state_sharding, batch_sharding),
                         out_shardings=(state_sharding, sharding_lib.replicated(mesh)),
                         donate_argnums=0))


def run(config, workdir: str, *, allow_config_change: bool = False, devices=None) -> dict:
  """Trains `config` in `workdir` (local or gs://), resuming from its latest checkpoint.

  The notebook entry point: `big_batch.train.run(big_batch.configs.get('mnist1d_cnn',
  'quick'), '/tmp/run')`. Returns the summary (also written to `summary.json`).
  `allow_config_change` lets a resumed run continue with a config that differs from the
  workdir's in fields that do not change the state (train/workdir.py). `devices` (default:
  every device of every process) are the devices `config.mesh` is laid over, e.g.
  `jax.devices()[:1]` to compare a run with its single-device twin in one process.
  """
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("train.run(devices=[]): give at least one device, or None for all")
  # From here on SIGTERM stops the run at the next step boundary, with a checkpoint.
  preemption = _PreemptionFlag()
  try:
    return _run(config, workdir, allow_config_change, preemption, devices)
  finally:
    preemption.restore()


def _run(config, workdir, allow_config_change, preemption, devices) -> dict:
  start_time = time.perf_counter()
  # --- Validate the config and the workdir before anything is built ----------------------
  validate(config, len(devices))
  workdir = workdir_lib.prepare(workdir)

  # --- Mesh, data, batch plan, task -------------------------------------------------------
  mesh = mesh_lib.create(config.mesh, devices)
  # Offline builders prepare the data set on first use: once, if the processes share a disk.
  data = distributed.process_0_first(lambda: datasets.load(config.data), "load_data")
  total_steps = BatchPlan(config, data.train.num_examples, 1).total_steps()
  task = tasks.build(config, data, mesh, total_steps)
  plan = BatchPlan(config, data.train.num_examples, mesh_lib.shards(mesh, task.batch_axes))

  # --- Sharded state and the jitted train step (which donates the state it is given) ------
  placed = setup(config, mesh, task)
  # On CPU devices XLA deadlocks when too many steps with collectives queue: bound the queue.
  train_step = distributed.bound_in_flight(placed.train_step, done=lambda out: out[1])

  # --- Resume (same config, or allowed changes), or start from scratch or a warm start ----
  previous = workdir_lib.previous_config(workdir)
  changes = (workdir_lib.differences(previous, workdir_lib.config_record(config))
             if previous is not None else {})
  checkpointer = Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
  try:
    restored_step, state, trainer_record = checkpointer.restore_latest(placed.abstract_state)
  except StructureMismatchError as error:
    checkpointer.close()
    changed = f"\nThe config differs in: {workdir_lib.describe(changes)}." if changes else ""
    raise ConfigError(f"{error}{changed}\nNothing was changed in {workdir}; use a new "
                      "--workdir for this config.") from None
  if restored_step is not None:
    workdir_lib.check_resume(changes, allow_config_change, restored_step)
    progress = Progress.from_json(trainer_record)
    _say(f"Resumed from the checkpoint at step {restored_step} in {workdir}")
  else:
    progress = Progress()
    state = placed.init(jax.random.key(config.seed))
    if init_from.is_set(config):
      state, source_step = init_from.warm_start(state, placed.abstract_state,
                                                   config.init_from)
      _say(f"Warm start: {config.init_from.paths} from step {source_step} of "
           f"{config.init_from.workdir}")
    _say(f"Starting from scratch in {workdir}")

  feed = Feed(task, plan, data.train, seed=config.seed, sharding=placed.batch_sharding,
              prefetch=0 if config.data.get("in_memory", True) else config.data.get("prefetch", 4),
              pool_size=config.batch.get("pool_size"), progress=progress)
  summary_path = workdir / "summary.json"
  if restored_step is not None and plan.done(progress.step, progress.examples_seen,
                                             feed.next_size(state)):
    finished = json.loads(summary_path.read_text()) if summary_path.exists() else None
    if (finished is not None and finished.get("complete")
        and finished.get("final_step") == progress.step):
      checkpointer.close()
      _say(f"The run in {workdir} is complete (step {progress.step}); nothing to do. "
           "Raise the budget (num_steps, num_epochs or num_examples) to train further.")
      return finished
  if jax.process_index() == 0:
    workdir_lib.record(workdir, config, progress.step, changes)

  # --- Train loop -------------------------------------------------------------------------
  writer = metrics_lib.MetricWriter(workdir, resume_step=progress.step)
  steps_budget = task.batch_size is not None and plan.max_examples is None
  progress_line = metrics_lib.ProgressLine(
      None if steps_budget else plan.total_examples(),
      total_steps if task.batch_size is None or steps_budget else None,
      progress.examples_seen, progress.step)
  evals_config = config.get("evals", {})
  pending = []  # (step, metrics, batch size) since the last log.
  train_scalars, eval_scalars = {}, {}
  last_saved = progress.step
  last_time = time.perf_counter()
  loop_start = last_time

  def check_finite():
    bad = _first_non_finite(pending)
    if bad is not None:
      checkpointer.close()
      raise NonFiniteLossError(
          f"non-finite training loss at step {bad}; stopping. The last good checkpoint "
          f"(step {last_saved or 'none'}) stays in {checkpointer.directory}")

  def log(step):
    nonlocal train_scalars, last_time, pending
    check_finite()
    now = time.perf_counter()
    train_scalars = metrics_lib.mean_of([m for _, m, _ in pending])
    rows = sum(size for _, _, size in pending)
    train_scalars.update(batch_size=rows / len(pending),
                         examples_per_second=rows / max(now - last_time, 1e-9),
                         examples_seen=feed.progress.examples_seen,
                         epoch=feed.progress.examples_seen / data.train.num_examples)
    if jax.process_count() > 1:  # Each process's own rate: a slow host shows here.
      train_scalars.update(
          {f"examples_per_second/process_{i}": rate for i, rate in enumerate(
              distributed.process_values(train_scalars["examples_per_second"]))})
    writer.write(step, train_scalars, "train")
    line = progress_line.line(step, feed.progress.examples_seen, train_scalars)
    _say(line)  # Every process builds it: it restarts the clock.
    pending, last_time = [], now

  def evaluate(name, step):
    eval_scalars[name] = task.evaluators[name](state)
    writer.write(step, eval_scalars[name], name)
    _say(f"{name} at step {step}: " + " ".join(
        f"{k}={v:.4f}" for k, v in eval_scalars[name].items() if "/" not in k))

  def save(step):
    nonlocal last_saved
    check_finite()
    checkpointer.save(step, state, feed.progress.to_json())
    last_saved = step

  step = progress.step
  try:
    with jax.set_mesh(mesh):
      size = feed.next_size(state)
      while not plan.done(feed.progress.step, feed.progress.examples_seen, size):
        state, batch = feed.next(state, size)
        state, step_metrics = train_step(state, batch)
        step = feed.progress.step
        pending.append((step, step_metrics, size))
        size = feed.next_size(state)
        last = plan.done(step, feed.progress.examples_seen, size)
        if step % config.log_every == 0 or last:
          log(step)
        for name in task.evaluators:
          if step % evals_config[name].every == 0 or last:
            evaluate(name, step)
        # preemption.check first: with several processes it must run at every step.
        if preemption.check(step) or step % config.checkpoint_every == 0 or last:
          save(step)
        if preemption.raised:
          _say(f"SIGTERM: saved a checkpoint at step {step} in {checkpointer.directory}; "
               "stopping. Run the same command again to resume.")
          break
      if step == progress.step:  # A finished run without its summary: evaluate it again.
        for name in task.evaluators:
          evaluate(name, step)
  finally:
    checkpointer.close()
    writer.close()

  # --- Summary and plots ------------------------------------------------------------------
  train_seconds = time.perf_counter() - loop_start
  examples_this_run = feed.progress.examples_seen - progress.examples_seen
  summary = {
      "final_step": step,
      "total_steps": total_steps,
      "complete": not preemption.raised,
      "preempted": preemption.raised,
      "examples_seen": feed.progress.examples_seen,
      "epochs": feed.progress.examples_seen / data.train.num_examples,
      "train": train_scalars,
      "evals": eval_scalars,
      "train_seconds_this_run": train_seconds,
      "wall_time_seconds": time.perf_counter() - start_time,
      "examples_per_second_this_run": examples_this_run / max(train_seconds, 1e-9),
  }
  _write_json(summary_path, summary)
  if jax.process_index() == 0:
    plot_curves(workdir / "metrics.jsonl", workdir / "curves.png")
    logging.info("summary: %s", summary)
  return summary
