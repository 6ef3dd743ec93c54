"""The communication of the compiled train step, counted in its HLO (8 simulated devices).

Data parallel: gradients all-reduced, parameters never all-gathered, and micro-batches that
never move rows between devices. FSDP: parameters all-gathered for the forward pass, gradients
reduce-scattered. The CPU backend has no reduce-scatter instruction (XLA's ReduceScatterCreator
runs for GPU/TPU only), so there the partitioner's reduce-scatter shows as an all-reduce of the
full gradient whose result each device dynamic-slices to its own shard; the test accepts
either form and checks which one it saw. Every device holds only its shard of the optimizer
state.
"""
import math
import re
from collections import Counter

import jax
import numpy as np
import pytest
from big_batch import tasks
from big_batch.data.datasets import Dataset
from big_batch.parallel import mesh as mesh_lib
from big_batch.parallel import sharding as sharding_lib
from big_batch.tasks import common
from big_batch.tasks.accumulation import accumulate_gradients
from big_batch.train import loop

BATCH = 64
DATA = Dataset(splits={}, num_classes=10, input_shape=(40,))
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
# The MLP's kernels [40, 64] and [64, 64] are >= 1024 elements (sharded under FSDP); the
# head [64, 10] and the biases are smaller and stay replicated.
SHARDED_KERNELS = ("layers/0/kernel", "layers/1/kernel")


def _compile(quick_config, mesh_shape, sharding, accumulation_steps=1):
  """(compiled train step, abstract sharded state) of the trainer for an MLP on a mesh."""
  config = quick_config.copy_and_resolve_references()
  config.evals = {}
  config.model = dict(name="mlp", hidden=(64, 64), norm="none")
  config.batch.size = BATCH
  config.batch.accumulation_steps = accumulation_steps
  config.sharding = sharding
  config.mesh = dict(data=mesh_shape[0], fsdp=mesh_shape[1], seq=1)
  mesh = mesh_lib.create(config.mesh)
  setup = loop.setup(config, mesh, tasks.build(config, DATA, mesh, 10))
  state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                       jax.eval_shape(setup.task.init, jax.random.key(0)), setup.state_sharding)
  batch_sharding = sharding_lib.batch_sharding(mesh)
  batch = {"input": jax.ShapeDtypeStruct((BATCH, 40), np.float32, sharding=batch_sharding),
           "label": jax.ShapeDtypeStruct((BATCH,), np.int32, sharding=batch_sharding)}
  with jax.set_mesh(mesh):
    return setup.train_step.lower(state, batch).compile(), state


def _instructions(hlo: str) -> list[tuple[str, str, str]]:
  """(result type, opcode, op_name) of every collective instruction (async pairs once)."""
  found = []
  pattern = rf"= (.*?) ({'|'.join(COLLECTIVES)})(?:-start)?\("
  for line in hlo.splitlines():
    match = re.search(pattern, line)
    if match:
      op_name = re.search(r'op_name="([^"]*)"', line)
      found.append((match.group(1), match.group(2), op_name.group(1) if op_name else ""))
  return found


def _counts(hlo: str) -> Counter:
  return Counter(opcode for _, opcode, _ in _instructions(hlo))


def _shape_text(shape) -> str:
  return f"f32[{','.join(map(str, shape))}]"


def _gradient_shapes(result_types: str) -> set[str]:
  return set(re.findall(r"f32\[[\d,]*\]", result_types))


def test_data_parallel_all_reduces_gradients_and_never_gathers_parameters(quick_config):
  compiled, state = _compile(quick_config, (8, 1), "replicated")
  hlo = compiled.as_text()
  counts = _counts(hlo)
  assert counts["all-gather"] == counts["reduce-scatter"] == 0, counts
  assert counts["all-to-all"] == counts["collective-permute"] == 0, counts
  reduced = set()
  for result, opcode, op_name in _instructions(hlo):
    if opcode == "all-reduce" and "transpose(jvp())" in op_name:
      reduced |= _gradient_shapes(result)
  # Every gradient is all-reduced; XLA lays a kernel's gradient out as [out, in] or [in, out].
  for leaf in jax.tree.leaves(state["params"]):
    assert {_shape_text(leaf.shape), _shape_text(leaf.shape[::-1])} & reduced, leaf.shape


@pytest.mark.parametrize("shards", [None, 1])
def test_accumulation_keeps_each_devices_rows_on_the_device(quick_config, monkeypatch, shards):
  """Micro-batch j takes the j-th sub-block of every device's block: no row moves. Splitting
  the global batch as if it were on one device (shards=1: micro-batch j = rows
  [jB/k, (j+1)B/k)) has to move rows between devices, and the HLO shows it."""
  if shards == 1:
    monkeypatch.setattr(common, "accumulate_gradients",
                        lambda *args: accumulate_gradients(*args[:5], shards=1))
  compiled, _ = _compile(quick_config, (8, 1), "replicated", accumulation_steps=4)
  counts = _counts(compiled.as_text())
  moved = counts["all-gather"] + counts["all-to-all"] + counts["collective-permute"]
  assert counts["all-reduce"] > 0
  if shards is None:
    assert moved == 0, counts
  else:
    assert moved > 0, counts


def test_fsdp_gathers_parameters_and_reduce_scatters_gradients(quick_config):
  compiled, state = _compile(quick_config, (1, 8), "fsdp")
  hlo = compiled.as_text()
  instructions = _instructions(hlo)
  name = sharding_lib.path_string
  kernels = {name(path): leaf for path, leaf in
             jax.tree_util.tree_leaves_with_path(state["params"])
             if name(path) in SHARDED_KERNELS}
  assert len(kernels) == 2
  gathered = {result for result, opcode, _ in instructions if opcode == "all-gather"}
  for kernel in kernels.values():
    assert "fsdp" in kernel.sharding.spec
    full = kernel.shape
    shard = kernel.sharding.shard_shape(full)
    assert any(_shape_text(full) in g or _shape_text(full[::-1]) in g for g in gathered), full

    if _counts(hlo)["reduce-scatter"]:
      scattered = [r for r, op, _ in instructions if op == "reduce-scatter"]
      assert any(_shape_text(shard) in r or _shape_text(shard[::-1]) in r for r in scattered)
    else:  # CPU: all-reduce of the whole gradient, then each device slices its shard.
      reduced = set()
      for result, opcode, op_name in instructions:
        if opcode == "all-reduce" and "transpose(jvp())" in op_name:
          reduced |= _gradient_shapes(result)
      assert {_shape_text(full), _shape_text(full[::-1])} & reduced, full
      slices = re.findall(r"= (f32\[[\d,]+\])\S* dynamic-slice\(.*transpose\(jvp\(\)\)", hlo)
      assert {_shape_text(shard), _shape_text(shard[::-1])} & set(slices), (shard, slices)


def test_fsdp_optimizer_state_is_split_over_the_devices(quick_config):
  compiled, state = _compile(quick_config, (2, 4), "fsdp")
  out_state_sharding = compiled.output_shardings[0]
  opt_leaves = jax.tree.leaves(state["opt_state"])
  opt_shardings = jax.tree.leaves(out_state_sharding["opt_state"])
  total = sum(leaf.size for leaf in opt_leaves)
  per_device = sum(math.prod(s.shard_shape(leaf.shape))
                   for leaf, s in zip(opt_leaves, opt_shardings))
  # Adam's mu and nu of the two sharded kernels are split 4 ways; the rest (< 1024 elements
  # per leaf) is replicated.
  sharded = 2 * sum(40 * 64 if k.endswith("0/kernel") else 64 * 64 for k in SHARDED_KERNELS)
  assert per_device == total - sharded + sharded // 4, (per_device, total)
  assert per_device < total / 2
  for leaf, s in zip(opt_leaves, opt_shardings):
    if leaf.size >= 1024:
      assert "fsdp" in s.spec, (leaf.shape, s.spec)
      assert s.shard_shape(leaf.shape) != leaf.shape
