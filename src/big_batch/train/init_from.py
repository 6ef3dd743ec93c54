"""Warm starts: named subtrees of the state from another run's checkpoint (`config.init_from`).

    config.init_from = dict(workdir='/runs/pretrain', paths=('params',), step=None)

copies the `params` subtree of the latest checkpoint (or of `step`) in that workdir into a
fresh run's state before its first step; every other part of the state (optimizer state,
step counters) keeps its initial value. `paths` is a tuple of '/'-joined state paths, taken
from the same path in the other run, or a dict {this run's path: the other run's path} (e.g.
{'policy': 'params', 'reference': 'params'} loads one pretrained LM twice). The arrays land
with this run's shardings. Paths missing on either side, and leaves whose shape or dtype
differ, are an error that names them, before anything is trained. A resumed run ignores
`init_from`: its own checkpoint has the state.
"""
import orbax.checkpoint as ocp
from etils import epath

from big_batch.checks import ConfigError
from big_batch.train.checkpoint import leaf_specs, structure_differences


def path_pairs(paths) -> list[tuple[str, str]]:
  """[(this run's path, the other run's path)] of `init_from.paths`."""
  if isinstance(paths, str):
    paths = (paths,)
  if hasattr(paths, "items"):
    return [(str(t).strip("/"), str(s).strip("/")) for t, s in paths.items()]
  return [(str(p).strip("/"), str(p).strip("/")) for p in paths]


def _key(tree, part: str):
  """The key of `tree` that path component `part` names (NNX lists have int keys)."""
  if not isinstance(tree, dict):
    return None
  if part in tree:
    return part
  if part.isdigit() and int(part) in tree:
    return int(part)
  return None


def _subtree(tree, path: str):
  for part in filter(None, path.split("/")):
    key = _key(tree, part)
    if key is None:
      return None
    tree = tree[key]
  return tree


def _replace(tree, path: str, value):
  head, _, rest = path.partition("/")
  key = _key(tree, head)
  return {**tree, key: _replace(tree[key], rest, value) if rest else value}


def _nest(path: str, value):
  for part in reversed([p for p in path.split("/") if p]):
    value = {part: value}
  return value


def warm_start(state, abstract_state, init_from):
  """`state` with the subtrees `init_from.paths` read from `init_from.workdir`'s checkpoint."""
  source = epath.Path(init_from.workdir) / "checkpoints"
  # Only read: nothing is saved or cleaned up in the other run's directory.
  manager = ocp.CheckpointManager(
      source, options=ocp.CheckpointManagerOptions(create=False),
      item_handlers={"state": ocp.PyTreeCheckpointHandler(),
                     "trainer": ocp.JsonCheckpointHandler()})
  steps = manager.all_steps()
  if not steps:
    raise ConfigError(f"config.init_from.workdir={init_from.workdir!r} has no checkpoints in "
                      f"{source}")
  step = init_from.get("step")
  step = max(steps) if step is None else step
  if step not in steps:
    raise ConfigError(f"config.init_from.step={step} is not a checkpoint of "
                      f"{init_from.workdir!r}: {sorted(steps)}")
  saved_tree = manager.item_metadata(step)["state"].tree
  item, restore_args = {}, {}
  for target, origin in path_pairs(init_from.paths):
    wanted, saved = _subtree(abstract_state, target), _subtree(saved_tree, origin)
    if wanted is None:
      raise ConfigError(f"config.init_from.paths: {target!r} is not a path of this run's state "
                        f"(its top level: {sorted(abstract_state)})")
    if saved is None:
      raise ConfigError(f"config.init_from.paths: {origin!r} is not in the checkpoint at step "
                        f"{step} of {init_from.workdir!r} (its top level: {sorted(saved_tree)})")
    prefixed = lambda specs: {f"{target}/{path}": spec for path, spec in specs.items()}
    differences = structure_differences(prefixed(leaf_specs(saved)),
                                        prefixed(leaf_specs(wanted)))
    if differences:
      raise ConfigError(f"config.init_from: {origin!r} of {init_from.workdir!r} (step {step}) "
                        f"does not fit {target!r} of this run:\n  " + "\n  ".join(differences))
    item = _merge(item, _nest(origin, wanted))
    restore_args = _merge(restore_args, _nest(origin, ocp.checkpoint_utils.construct_restore_args(
        wanted)))
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      item=item, restore_args=restore_args, partial_restore=True)))["state"]
  manager.close()
  for target, origin in path_pairs(init_from.paths):
    state = _replace(state, target, _subtree(restored, origin))
  return state, step


def _merge(a: dict, b: dict) -> dict:
  out = dict(a)
  for key, value in b.items():
    out[key] = _merge(out[key], value) if key in out and isinstance(value, dict) else value
  return out


def is_set(config) -> bool:
  """Whether `config` asks for a warm start (an `init_from` with a `workdir`)."""
  section = config.get("init_from")
  return section is not None and section.get("workdir") is not None


def check(top) -> None:
  """Validates `config.init_from`; None, or a `workdir` of None, is no warm start."""
  if top.node.init_from is None:
    top.read("init_from")
    return
  section = top.section("init_from")
  if section.read("workdir", default=None) is None:
    for key in section.keys():
      section.read(key)
    return
  paths = section.read("paths", default=("params",))
  if not path_pairs(paths):
    section.fail("paths", "names no state path to load")
  step = section.read("step", default=None)
  if step is not None:
    section.non_negative("step", integer=True)
  section.reject_unread("a warm start takes workdir, paths, step")
