"""Shardings of the batch and of the train state over the mesh.

`replicated`: every device holds all parameters and optimizer state (data parallel).
`fsdp`: each leaf is split over the `fsdp` axis along its largest dimension divisible by the
axis size (ZeRO-3 style); leaves smaller than `min_fsdp_size` elements stay replicated.
Rules `[(regex, spec), ...]` on '/'-joined paths override both; the first match wins, and a
spec is a tuple of mesh-axis names or None per dimension (e.g. `(None, 'fsdp')`).
"""
import re

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from big_batch.parallel.mesh import BATCH_AXES

STRATEGIES = ("replicated", "fsdp")


def batch_sharding(mesh: Mesh, axes=BATCH_AXES) -> NamedSharding:
  """Leading (batch) dimension split over `axes` (default ('data', 'fsdp'))."""
  return NamedSharding(mesh, P(tuple(axes)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def path_string(path) -> str:
  """A jax key path as 'a/b/0/c'."""
  parts = []
  for key in path:
    for attr in ("key", "idx", "name"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


def fsdp_spec(shape, fsdp_size: int, min_size: int) -> P:
  """'fsdp' on the largest dimension divisible by `fsdp_size`; replicated if none or small."""
  size = 1
  for d in shape:
    size *= d
  if fsdp_size == 1 or size < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def state_shardings(abstract_state, mesh: Mesh, strategy: str = "replicated", rules=(),
                    min_fsdp_size: int = 1024):
  """A NamedSharding for every leaf of `abstract_state` (arrays or ShapeDtypeStructs)."""
  if strategy not in STRATEGIES:
    raise ValueError(f"config.sharding={strategy!r} is not one of {STRATEGIES}")
  compiled_rules = [(re.compile(pattern), P(*spec)) for pattern, spec in rules]

  def leaf_sharding(path, leaf):
    name = path_string(path)
    for pattern, spec in compiled_rules:
      if pattern.search(name):
        return NamedSharding(mesh, spec)
    if strategy == "fsdp":
      return NamedSharding(mesh, fsdp_spec(leaf.shape, mesh.shape["fsdp"], min_fsdp_size))
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(leaf_sharding, abstract_state)


def leading_axis(abstract_tree, mesh: Mesh, axis: str):
  """Shardings that split every leaf's leading dimension over mesh axis `axis`.

  For state with one slice per member of a group (per-worker parameter copies of a
  decentralized method, per-critic ensembles): member i lives on the devices of index i // (n /
  size) along `axis`, and nothing of it is replicated across that axis.
  """
  if axis not in mesh.shape:
    raise ValueError(f"mesh axis {axis!r} is not one of the mesh's axes {tuple(mesh.shape)}")
  size = mesh.shape[axis]

  def leaf_sharding(path, leaf):
    if not leaf.shape or leaf.shape[0] % size:
      raise ValueError(f"state leaf {path_string(path)!r} of shape {leaf.shape} has no leading "
                       f"dimension divisible by mesh axis {axis!r} of size {size}")
    return NamedSharding(mesh, P(axis))

  return jax.tree_util.tree_map_with_path(leaf_sharding, abstract_tree)


def check(section, mesh_sizes: dict) -> None:
  """Validates the top-level `sharding` and `sharding_rules` fields (a `checks.Section`)."""
  section.one_of("sharding", STRATEGIES, default="replicated")
  rules = section.read("sharding_rules", default=())
  for rule in rules:
    if len(rule) != 2:
      section.fail("sharding_rules", f"must be (regex, spec) pairs; got {rule!r}")
    pattern, spec = rule
    try:
      re.compile(pattern)
    except re.error as error:
      section.fail("sharding_rules", f"holds the bad regex {pattern!r} ({error})")
    for axis in (spec or ()):
      names = axis if isinstance(axis, (tuple, list)) else (axis,)
      for name in names:
        if name is not None and name not in mesh_sizes:
          section.fail("sharding_rules", f"names mesh axis {name!r}, which is not one of "
                                         f"{sorted(mesh_sizes)}")
