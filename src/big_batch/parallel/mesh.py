"""The device mesh from `config.mesh`: axes named by role, one of them may be -1 (fill).

Axis roles: `data` (batch, replicated state), `fsdp` (batch and sharded state), `seq`
(sequence), always present (size 1 unless set); a task may add axes of its own by name
(`worker`, `stage`, `ensemble`, ...), placed after these three in the order the config gives
them. Axes are `AxisType.Auto`: the trainer's jit in/out shardings pin state and batch, and
the partitioner propagates the rest, so models need no sharding annotations.
"""
import math

import jax
from jax.sharding import AxisType, Mesh

from big_batch.checks import ConfigError

AXES = ("data", "fsdp", "seq")
BATCH_AXES = ("data", "fsdp")


def axis_names(config) -> tuple[str, ...]:
  """('data', 'fsdp', 'seq', *the config's other axes in its order)."""
  return AXES + tuple(k for k in config.keys() if k not in AXES)


def axis_sizes(config, num_devices: int) -> dict:
  """{axis: size} with a -1 entry resolved to fill `num_devices`; errors name the field."""
  bad_names = [k for k in config.keys() if not k.isidentifier()]
  if bad_names:
    raise ConfigError(f"config.mesh axis names {bad_names} must be Python identifiers")
  sizes = {axis: config.get(axis, 1) for axis in axis_names(config)}
  bad = {axis: size for axis, size in sizes.items()
         if isinstance(size, bool) or not isinstance(size, int) or size == 0 or size < -1}
  fill = [axis for axis, size in sizes.items() if size == -1]
  if bad or len(fill) > 1:
    raise ConfigError(f"config.mesh={sizes} must have positive integer sizes and at most "
                      "one -1")
  fixed = math.prod(size for size in sizes.values() if size != -1)
  if fill:
    if num_devices % fixed:
      raise ConfigError(f"config.mesh={sizes}: {num_devices} devices are not divisible by "
                        f"the fixed axes' product {fixed}")
    sizes[fill[0]] = num_devices // fixed
  if math.prod(sizes.values()) != num_devices:
    raise ConfigError(f"config.mesh={sizes} has {math.prod(sizes.values())} devices but "
                      f"{num_devices} are available")
  return sizes


def create(config, devices=None) -> Mesh:
  """A mesh over all devices (of all processes) with the axes of `config`."""
  devices = jax.devices() if devices is None else devices
  sizes = axis_sizes(config, len(devices))
  return jax.make_mesh(tuple(sizes.values()), tuple(sizes),
                       axis_types=(AxisType.Auto,) * len(sizes), devices=devices)


def shards(mesh_or_sizes, axes=BATCH_AXES) -> int:
  """How many shards `axes` split an array into (the product of their sizes; 1 if absent)."""
  shape = mesh_or_sizes.shape if isinstance(mesh_or_sizes, Mesh) else mesh_or_sizes
  return math.prod(shape.get(a, 1) for a in axes)


def check(section, num_devices: int) -> dict:
  """Validates `config.mesh`; returns the resolved {axis: size}."""
  for key in section.keys():
    section.read(key)
  return axis_sizes(section.node, num_devices)
