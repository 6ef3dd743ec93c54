"""Checks a config before anything is built or compiled; every error names the field and value.

Each component checks the fields it reads (checks.py): the trainer its own (seed, budget,
cadences, evaluator cadences, batch-size plan, warm start), then the mesh, the sharding
policy, the data set, and the task, which checks its model, optimizers and evaluators. A
field that none of them read is an error.
"""
from big_batch import checks, tasks
from big_batch.data import datasets
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib
from big_batch.train import batch_plan, init_from


def validate(config, num_devices: int) -> dict:
  """Raises checks.ConfigError for the first bad field; returns the mesh's {axis: size}."""
  checker = checks.Checker(config)
  top = checker.section()
  seed = top.read("seed")
  if not isinstance(seed, int) or isinstance(seed, bool):
    top.fail("seed", "must be an integer")
  mesh_sizes = mesh_lib.check(top.section("mesh"), num_devices)
  sharding_lib.check(top, mesh_sizes)
  datasets.check(top.section("data"))
  batch = top.section("batch")
  batch_plan.check(batch, top, mesh_lib.shards(mesh_sizes))
  for field in ("log_every", "checkpoint_every", "keep_checkpoints"):
    top.positive(field, integer=True)
  if top.has("evals"):
    for name in top.section("evals").keys():
      checker.section(f"evals.{name}").positive("every", integer=True)
  if top.has("init_from"):
    init_from.check(top)
  sizes = (batch.node.size, *(size for _, size in batch.node.get("schedule") or ()))
  tasks.check(checker, mesh_sizes, sorted(set(sizes)))
  _reject_other_tasks_sections(checker)
  checker.reject_unread()
  return mesh_sizes


def _reject_other_tasks_sections(checker) -> None:
  """A section that only other tasks read (their method's switch) cannot combine with this
  run's task: say which, before the generic "read by nothing" error."""
  task = checker.config.task
  unread = set(checker.unread())
  for section, owners in tasks.section_owners().items():
    if task in owners or section not in checker.config:
      continue
    node = checker.config[section]
    leaves = [f"{section}.{key}" for key in node.keys()] if hasattr(node, "keys") else [section]
    if leaves and all(any(u == leaf or u.startswith(leaf + ".") for u in unread)
                      for leaf in leaves):
      names = " or ".join(repr(owner) for owner in owners)
      raise checks.ConfigError(
          f"config.{section} is the switch of task {names} and does not combine with "
          f"config.task={task!r}: a run has one task (README: switches that do not combine)")

