"""The device mesh from `config.mesh`: axes named by role, one of them may be -1 (fill).

Axis roles: `data` (batch, replicated state), `fsdp` (batch and sharded state), `seq`
(sequence). Axes are `AxisType.Auto`: the trainer's jit in/out shardings pin state and batch,
and the partitioner propagates the rest, so models need no sharding annotations.
"""
import math

import jax
from jax.sharding import AxisType, Mesh

AXES = ("data", "fsdp", "seq")
BATCH_AXES = ("data", "fsdp")


def axis_sizes(config, num_devices: int) -> dict:
  """{axis: size} with a -1 entry resolved to fill `num_devices`; errors name the field."""
  unknown = sorted(set(config.keys()) - set(AXES))
  if unknown:
    raise ValueError(f"config.mesh has unknown axes {unknown}; the axes are {list(AXES)}")
  sizes = {axis: int(config.get(axis, 1)) for axis in AXES}
  fill = [axis for axis, size in sizes.items() if size == -1]
  bad = {axis: size for axis, size in sizes.items() if size == 0 or size < -1}
  if bad or len(fill) > 1:
    raise ValueError(f"config.mesh={sizes} must have positive sizes and at most one -1")
  fixed = math.prod(size for size in sizes.values() if size != -1)
  if fill:
    if num_devices % fixed:
      raise ValueError(f"config.mesh={sizes}: {num_devices} devices are not divisible by the "
                       f"fixed axes' product {fixed}")
    sizes[fill[0]] = num_devices // fixed
  if math.prod(sizes.values()) != num_devices:
    raise ValueError(f"config.mesh={sizes} has {math.prod(sizes.values())} devices but "
                     f"{num_devices} are available")
  return sizes


def create(config, devices=None) -> Mesh:
  """A mesh over all devices (of all processes) with axes ('data', 'fsdp', 'seq')."""
  devices = jax.devices() if devices is None else devices
  sizes = axis_sizes(config, len(devices))
  return jax.make_mesh(tuple(sizes[a] for a in AXES), AXES,
                       axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def batch_size_of_axes(mesh: Mesh) -> int:
  """How many shards a global batch is split into (the product of the batch axes)."""
  return math.prod(mesh.shape[a] for a in BATCH_AXES)
