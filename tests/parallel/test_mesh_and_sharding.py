"""Mesh sizes from the config and the batch/state shardings over it (8 simulated devices)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib


@pytest.mark.parametrize("config, expected", [
    (dict(data=-1, fsdp=1, seq=1), dict(data=8, fsdp=1, seq=1)),
    (dict(data=2, fsdp=-1, seq=1), dict(data=2, fsdp=4, seq=1)),
    (dict(data=2, fsdp=2, seq=-1), dict(data=2, fsdp=2, seq=2)),
    (dict(fsdp=8), dict(data=1, fsdp=8, seq=1)),  # Absent axes have size 1.
    (dict(data=4, fsdp=2, seq=1), dict(data=4, fsdp=2, seq=1)),
])
def test_axis_sizes_fill_the_devices(config, expected):
  assert mesh_lib.axis_sizes(config, 8) == expected


@pytest.mark.parametrize("config, match", [
    (dict(data=4, fsdp=1, seq=1), r"has 4 devices but 8 are available"),
    (dict(data=3, fsdp=-1, seq=1), r"8 devices are not divisible by the fixed axes' product 3"),
    (dict(data=-1, fsdp=-1, seq=1), r"at most one -1"),
    (dict(data=0, fsdp=8, seq=1), r"positive integer sizes"),
    (dict(data=8, worker=2.5), r"positive integer sizes"),
    ({"data": 8, "my axis": 1}, r"axis names \['my axis'\] must be Python identifiers"),
])
def test_axis_sizes_errors_name_the_mesh(config, match):
  with pytest.raises(ValueError, match=match):
    mesh_lib.axis_sizes(config, 8)


def test_a_task_may_name_axes_of_its_own_after_the_three_roles():
  sizes = mesh_lib.axis_sizes(dict(data=2, worker=-1, stage=2), 8)
  assert list(sizes) == ["data", "fsdp", "seq", "worker", "stage"]
  assert sizes == dict(data=2, fsdp=1, seq=1, worker=2, stage=2)
  mesh = mesh_lib.create(dict(data=2, worker=-1, stage=2))
  assert mesh.axis_names == ("data", "fsdp", "seq", "worker", "stage")
  assert mesh_lib.shards(mesh) == 2 and mesh_lib.shards(mesh, ("worker",)) == 2


def test_leading_axis_sharding_puts_one_slice_per_member_on_its_devices():
  mesh = mesh_lib.create(dict(data=2, worker=4))
  state = {"x": jnp.arange(8 * 3.0).reshape(8, 3), "y": jnp.zeros((4,))}
  shardings = sharding_lib.leading_axis(state, mesh, "worker")
  placed = jax.device_put(state, shardings)
  assert placed["x"].sharding.shard_shape((8, 3)) == (2, 3)  # 8 members over 4 workers.
  assert placed["y"].sharding.shard_shape((4,)) == (1,)
  with pytest.raises(ValueError, match=r"state leaf 'x' of shape \(6, 3\) has no leading "
                                       r"dimension divisible by mesh axis 'worker' of size 4"):
    sharding_lib.leading_axis({"x": jnp.zeros((6, 3))}, mesh, "worker")
  with pytest.raises(ValueError, match=r"mesh axis 'stage' is not one of"):
    sharding_lib.leading_axis(state, mesh, "stage")


def test_create_builds_auto_axes_over_the_given_devices():
  mesh = mesh_lib.create(dict(data=2, fsdp=4, seq=1))
  assert dict(mesh.shape) == dict(data=2, fsdp=4, seq=1)
  assert set(mesh.axis_types) == {jax.sharding.AxisType.Auto}
  assert mesh_lib.shards(mesh) == 8
  one = mesh_lib.create(dict(data=-1), devices=jax.devices()[:1])
  assert one.devices.size == 1 and mesh_lib.shards(one) == 1


@pytest.mark.parametrize("shape, fsdp, min_size, expected", [
    ((64, 40), 8, 1, P("fsdp", None)),         # Largest dimension divisible by 8.
    ((40, 64), 8, 1, P(None, "fsdp")),
    ((12, 64, 10), 4, 1, P(None, "fsdp", None)),
    ((12, 10), 4, 1, P("fsdp", None)),           # 12 is the largest, and divisible.
    ((10, 12), 8, 1, P()),                       # Nothing divisible by 8: replicated.
    ((6, 20), 4, 1, P(None, "fsdp")),            # 20 divisible by 4, 6 not.
    ((20, 6), 3, 1, P(None, "fsdp")),            # The largest divisible, not the largest.
    ((64, 8), 8, 1024, P()),                     # 512 elements < min_size: replicated.
    ((64, 16), 8, 1024, P("fsdp", None)),        # 1024 elements: sharded.
    ((64, 40), 1, 1, P()),                       # An fsdp axis of size 1 shards nothing.
    ((), 8, 1, P()),                             # Scalars (the step counter).
])
def test_fsdp_spec_picks_the_largest_divisible_dimension(shape, fsdp, min_size, expected):
  assert sharding_lib.fsdp_spec(shape, fsdp, min_size) == expected


def _state():
  return {"params": {"dense": {"kernel": jnp.zeros((64, 40)), "bias": jnp.zeros(40)},
                     "head": {"kernel": jnp.zeros((40, 10))}},
          "step": jnp.zeros((), jnp.int32)}


def test_state_shardings_replicated_fsdp_and_rules():
  mesh = mesh_lib.create(dict(data=2, fsdp=4, seq=1))
  replicated = sharding_lib.state_shardings(_state(), mesh, "replicated")
  assert all(s.spec == P() for s in jax.tree.leaves(replicated))

  fsdp = sharding_lib.state_shardings(_state(), mesh, "fsdp", min_fsdp_size=1024)
  assert fsdp["params"]["dense"]["kernel"].spec == P("fsdp", None)
  assert fsdp["params"]["dense"]["bias"].spec == P()   # 40 elements: too small.
  assert fsdp["params"]["head"]["kernel"].spec == P()  # 400 elements: too small.
  assert fsdp["step"].spec == P()

  rules = [(r"head/kernel$", (None, "fsdp")), (r"dense/kernel", ("data", None))]
  ruled = sharding_lib.state_shardings(_state(), mesh, "fsdp", rules, min_fsdp_size=1024)
  assert ruled["params"]["head"]["kernel"].spec == P(None, "fsdp")  # A rule beats "too small".
  assert ruled["params"]["dense"]["kernel"].spec == P("data", None)  # A rule beats fsdp.
  assert ruled["params"]["dense"]["bias"].spec == P()

  first = [(r"kernel", ("data", None)), (r"dense/kernel", (None, "fsdp"))]
  assert sharding_lib.state_shardings(_state(), mesh, "replicated", first)[
      "params"]["dense"]["kernel"].spec == P("data", None)  # The first matching rule wins.


def test_unknown_strategy_is_an_error():
  mesh = mesh_lib.create(dict(data=-1))
  with pytest.raises(ValueError, match=r"config.sharding='zero' is not one of"):
    sharding_lib.state_shardings(_state(), mesh, "zero")


def test_path_string_joins_keys_indices_and_attributes():
  tree = {"layers": [{"kernel": 1}, {"kernel": 2}]}
  paths = [sharding_lib.path_string(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
  assert paths == ["layers/0/kernel", "layers/1/kernel"]


@pytest.mark.parametrize("shape", [(8, 1), (4, 2), (2, 4), (1, 8)])
def test_batch_sharding_gives_each_device_a_contiguous_block(shape):
  mesh = mesh_lib.create(dict(data=shape[0], fsdp=shape[1], seq=1))
  batch = np.arange(32 * 3, dtype=np.float32).reshape(32, 3)
  sharded = jax.device_put(batch, sharding_lib.batch_sharding(mesh))
  assert sharding_lib.batch_sharding(mesh).spec == P(("data", "fsdp"))
  # Device (i, j) of the ('data', 'fsdp') grid holds block i * |fsdp| + j of 4 rows.
  for i in range(shape[0]):
    for j in range(shape[1]):
      block = i * shape[1] + j
      device = mesh.devices[i, j, 0]
      (shard,) = [s for s in sharded.addressable_shards if s.device == device]
      np.testing.assert_array_equal(shard.data, batch[4 * block:4 * (block + 1)])
