"""Tasks by name: what a train step computes, and what the trainer may ask of it.

A task module has `build(config, data, mesh, total_steps) -> Task` (tasks/common.py) and
`check(checker, mesh_sizes, batch_sizes)`, which validates every config field the task reads
(its model, optimizers, evaluators) before anything is built. Register a new task here.
"""
from big_batch.tasks import adaptive_batch, conadv, crest, decentralized, heterogeneous, lm
from big_batch.tasks import pipelined, supervised
from big_batch.tasks.common import Task, gradient_step, nnx_model
from big_batch.recsys import task as mclrec
from big_batch.rl import exploration_task
from big_batch.rl import offline_task as q_ensemble
from big_batch.rlhf import align_task as rlhf_align, reward_task as rlhf_reward_model
from big_batch.selection import regression_task
from big_batch.singlecell import task as ba_scvi

# Paper families in their own subpackages (recsys/, singlecell/, ...) register here too.
TASKS = {"supervised": supervised, "lm": lm, "adaptive_batch": adaptive_batch, "conadv": conadv,
         "crest": crest, "heterogeneous": heterogeneous, "decentralized": decentralized,
         "pipelined": pipelined, "mclrec": mclrec, "ba_scvi": ba_scvi,
         "regression": regression_task, "svd_exploration": exploration_task,
         "q_ensemble": q_ensemble,
         "rlhf_reward_model": rlhf_reward_model, "rlhf_align": rlhf_align}

__all__ = ["TASKS", "Task", "build", "check", "gradient_step", "nnx_model", "section_owners"]


def section_owners() -> dict[str, tuple[str, ...]]:
  """{config section: the tasks that read it}, from each task module's `SECTIONS`: a run has
  one task, so a section of another task's (ConAdv's `adversary` under
  task='adaptive_batch') is a pair of switches that does not combine."""
  owners = {}
  for name, module in TASKS.items():
    for section in getattr(module, "SECTIONS", ()):
      owners.setdefault(section, []).append(name)
  return {section: tuple(names) for section, names in owners.items()}


def _module(name):
  if name not in TASKS:
    raise ValueError(f"config.task={name!r} is not one of {sorted(TASKS)}")
  return TASKS[name]


def build(config, data, mesh, total_steps: int) -> Task:
  return _module(config.task).build(config, data, mesh, total_steps)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  checker.section().one_of("task", TASKS)
  _module(checker.config.task).check(checker, mesh_sizes, batch_sizes)
