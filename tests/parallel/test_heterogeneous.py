"""Uneven per-device batches in one SPMD program (parallel/heterogeneous.py) against plain
gradients of the global batch written out with jax.grad."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from big_batch.parallel import heterogeneous

AXES = ("data",)


def mesh_of(n):
  return jax.make_mesh((n,), AXES, devices=jax.devices()[:n])


def problem(rows, seed=0, features=6, classes=3):
  rng = np.random.default_rng(seed)
  params = {"w": jnp.asarray(rng.normal(size=(features, classes)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(classes,)), jnp.float32)}
  data = {"input": rng.normal(size=(rows, features)).astype(np.float32),
          "label": rng.integers(0, classes, rows).astype(np.int32)}
  return params, data


def per_example_loss(params, x, y):
  logits = jnp.tanh(x @ params["w"]) * 2 + params["b"]
  return -jax.nn.log_softmax(logits)[jnp.arange(len(y)), y]


def sum_fn(params, micro_batch):
  loss = per_example_loss(params, micro_batch["input"], micro_batch["label"])
  return (loss * micro_batch["weight"]).sum(), {"rows": micro_batch["weight"].sum()}


def padded_batch(data, plan, mesh):
  arranged = heterogeneous.arrange(np.arange(plan.global_batch), plan)
  batch = {k: v[arranged["index"]] for k, v in data.items()}
  batch["weight"] = arranged["weight"]
  sharding = NamedSharding(mesh, P(AXES))
  return jax.device_put(batch, sharding)


def test_layout_counts_and_padding():
  plan = heterogeneous.layout((5, 1, 8), micro_batch=3)
  assert plan.counts == (2, 1, 3) and plan.slots == 3 and plan.padded_size == 27
  arranged = heterogeneous.arrange(np.arange(100, 114), plan)
  index, weight = arranged["index"].reshape(3, 9), arranged["weight"].reshape(3, 9)
  np.testing.assert_array_equal(index[0, :5], np.arange(100, 105))
  np.testing.assert_array_equal(index[1, :1], [105])
  np.testing.assert_array_equal(index[2, :8], np.arange(106, 114))
  np.testing.assert_array_equal(weight.sum(1), [5, 1, 8])
  assert (weight[0, 5:] == 0).all() and (weight[2, 8:] == 0).all()
  # Each real row appears once with weight 1: the B examples, no more, no fewer.
  np.testing.assert_array_equal(np.sort(arranged["index"][arranged["weight"] > 0]),
                                np.arange(100, 114))


@pytest.mark.parametrize("rows, bad", [((0, 3), "at least one row"), ((), "at least one row")])
def test_bad_layouts_are_named(rows, bad):
  with pytest.raises(ValueError, match=bad):
    heterogeneous.layout(rows, 2)
  with pytest.raises(ValueError, match="micro_batch=0"):
    heterogeneous.layout((1, 2), 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_gradient_of_any_split_is_the_global_batch_gradient(seed):
  """Eq. (1): sum_i (b_i / B) g_i = grad of the mean loss over the B examples."""
  rng = np.random.default_rng(seed)
  rows = tuple(int(b) for b in rng.integers(1, 20, size=8))
  plan = heterogeneous.layout(rows, micro_batch=int(rng.integers(1, 7)))
  params, data = problem(plan.global_batch, seed)
  mesh = mesh_of(8)
  (loss_sum, aux), grad_sums = jax.jit(
      lambda p, b: heterogeneous.accumulated_sums(sum_fn, p, b, plan, mesh, AXES))(
          params, padded_batch(data, plan, mesh))
  mean_loss = lambda p: per_example_loss(p, data["input"], data["label"]).mean()
  want = jax.grad(mean_loss)(params)
  for key in params:
    np.testing.assert_allclose(grad_sums[key] / plan.global_batch, want[key], rtol=2e-5,
                               atol=1e-6)
  np.testing.assert_allclose(loss_sum / plan.global_batch, mean_loss(params), rtol=1e-5)
  assert float(aux["rows"]) == plan.global_batch


def test_each_device_accumulates_its_own_micro_batches_like_a_plain_loop():
  """Device i's share equals accumulating g_i micro-batch gradients over its real rows."""
  plan = heterogeneous.layout((7, 2, 12, 1), micro_batch=3)
  params, data = problem(plan.global_batch, 3)
  mesh = mesh_of(4)
  one_device = lambda i: heterogeneous.layout((plan.rows[i],), plan.micro_batch)
  start = 0
  total = jax.tree.map(jnp.zeros_like, params)
  for i, b in enumerate(plan.rows):
    plain = jax.tree.map(jnp.zeros_like, params)
    for j in range(0, b, plan.micro_batch):  # The plain loop over real rows only.
      rows = slice(start + j, start + min(j + plan.micro_batch, b))
      grad = jax.grad(lambda p: per_example_loss(p, data["input"][rows],
                                                 data["label"][rows]).sum())(params)
      plain = jax.tree.map(jnp.add, plain, grad)
    sub = {k: v[start:start + b] for k, v in data.items()}
    mine = heterogeneous.accumulated_sums(sum_fn, params, padded_batch(sub, one_device(i),
                                                                       mesh_of(1)),
                                          one_device(i), mesh_of(1), AXES)[1]
    for key in params:
      np.testing.assert_allclose(mine[key], plain[key], rtol=1e-5, atol=1e-6)
    total = jax.tree.map(jnp.add, total, plain)
    start += b
  together = heterogeneous.accumulated_sums(sum_fn, params, padded_batch(data, plan, mesh),
                                            plan, mesh, AXES)[1]
  for key in params:
    np.testing.assert_allclose(together[key], total[key], rtol=1e-5, atol=1e-6)


def test_emulated_slowdown_changes_nothing_bitwise_and_is_not_compiled_away():
  plan = heterogeneous.layout((6, 2), micro_batch=2)
  params, data = problem(plan.global_batch, 4)
  mesh = mesh_of(2)
  batch = padded_batch(data, plan, mesh)
  run = lambda slowdown: jax.jit(lambda p, b: heterogeneous.accumulated_sums(
      sum_fn, p, b, plan, mesh, AXES, slowdown))
  plain, slowed = run((1, 1))(params, batch), run((1, 5))(params, batch)
  jax.tree.map(np.testing.assert_array_equal, plain, slowed)
  # Two nested while loops survive compilation: micro-batches, and repeats of each.
  hlo = run((1, 5)).lower(params, batch).compile().as_text()
  assert hlo.count(" while(") >= 2


def test_a_layout_for_another_device_count_is_an_error():
  plan = heterogeneous.layout((2, 2, 2), 2)
  params, data = problem(6)
  with pytest.raises(ValueError, match="a layout of 3 devices on a mesh of 2"):
    heterogeneous.accumulated_sums(sum_fn, params, data, plan, mesh_of(2), AXES)
