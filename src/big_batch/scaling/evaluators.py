"""Evaluators of the training loss on sampled batches: its curvature and its gradient noise.

A one-model task (tasks/single_model.py) builds them from `config.evals.<name>` by `kind`:

  hessian:      {every, split='train', batch_size, order=20}: the extreme eigenvalues of the
                Hessian of the mean loss over `batch_size` sampled rows, by `order` Lanczos
                steps (scaling/hessian.py): 'lambda_max', 'lambda_min', and 'max_sgd_lr',
                2 / lambda_max, the stability limit of plain SGD (scaling/learning_rate.py);
  noise_scale:  {every, split='train', batch_size, small_batch_size, num_batches=4}: the
                gradient noise scale B_simple (scaling/noise_scale.py) from the gradients of
                `num_batches` sampled batches of `batch_size` rows, each computed as
                batch_size / small_batch_size gradients of disjoint `small_batch_size`-row
                parts: 'b_simple', 'grad_sq_norm', 'trace_covariance'.

The loss is the task's `eval_step` (the sum of per-example losses over a masked batch, divided
by its count): for models with batch norm, on the running statistics, so every example's
loss depends on its own row only, as the noise-scale and random-matrix models assume (at
initialization those statistics are not yet the data's: measure batch-norm models after
some training). Rows are
drawn by a generator seeded with (config.seed, step), distinct within each batch, so a resumed
run measures on the same rows.
"""
import jax
import numpy as np

from big_batch.checks import ConfigError
from big_batch.data import pipeline
from big_batch.parallel import sharding as sharding_lib
from big_batch.parallel.mesh import BATCH_AXES
from big_batch.scaling import hessian, noise_scale
from big_batch.scaling.learning_rate import max_learning_rate

KINDS = ("hessian", "noise_scale")


def mean_loss_of(eval_step):
  """loss(params, (state, batch)): the mean of `eval_step`'s per-example loss over `batch`."""

  def loss(params, state_and_batch):
    state, batch = state_and_batch
    out = eval_step({**state, "params": params}, batch)
    return out["loss"] / out["count"]

  return loss


class _Sampler:
  """Batches of distinct rows of `split`, as global arrays with an all-ones mask."""

  def __init__(self, split, mesh, batch_axes):
    self.split = split
    self.reader = pipeline.BatchReader(split, sharding_lib.batch_sharding(mesh, batch_axes))

  def indices(self, seed: int, step: int, size: int, count: int = 1) -> np.ndarray:
    """[count, size] row indices, each batch's rows distinct (drawn without replacement)."""
    rng = np.random.default_rng((seed, step))
    return np.stack([rng.choice(self.split.num_examples, size, replace=False)
                     for _ in range(count)])

  def read(self, indices) -> dict:
    return self.reader.read(indices, {"mask": np.ones(len(indices), np.float32)})


def _step_of(state) -> int:
  return int(jax.device_get(state["step"]))


def hessian_evaluator(eval_step, split, *, mesh, batch_size: int, order: int, seed: int,
                      batch_axes=BATCH_AXES):
  """{'lambda_max', 'lambda_min', 'max_sgd_lr'} of the batch Hessian at the state's params."""
  sampler = _Sampler(split, mesh, batch_axes)
  loss = mean_loss_of(eval_step)

  def evaluate(state) -> dict:
    step = _step_of(state)
    rest = {k: v for k, v in state.items() if k != "params"}
    batch = sampler.read(sampler.indices(seed, step, batch_size)[0])
    matvec = hessian.hessian_matvec(loss, state["params"], (rest, batch))
    values = hessian.top_eigenvalues(matvec, state["params"], order=order, seed=step)
    return {"lambda_max": float(values[0]), "lambda_min": float(values[-1]),
            "max_sgd_lr": max_learning_rate(float(values[0]))}

  return evaluate


def noise_scale_evaluator(eval_step, split, *, mesh, batch_size: int, small_batch_size: int,
                          num_batches: int, seed: int, batch_axes=BATCH_AXES):
  """{'b_simple', 'grad_sq_norm', 'trace_covariance'} at the state's params (McCandlish et al.
  2018, App. A), from one backward pass over num_batches x batch_size rows."""
  sampler = _Sampler(split, mesh, batch_axes)
  grad = jax.jit(jax.grad(mean_loss_of(eval_step)))
  sq_norm = jax.jit(lambda tree: sum(jax.numpy.vdot(x, x) for x in jax.tree.leaves(tree)))
  add = jax.jit(lambda a, b: jax.tree.map(jax.numpy.add, a, b))
  groups = batch_size // small_batch_size

  def evaluate(state) -> dict:
    step = _step_of(state)
    rest = {k: v for k, v in state.items() if k != "params"}
    indices = sampler.indices(seed, step, batch_size, num_batches).reshape(
        num_batches * groups, small_batch_size)
    small, big, total = [], [], None
    for j, rows in enumerate(indices):
      g = grad(state["params"], (rest, sampler.read(rows)))
      small.append(float(sq_norm(g)))
      total = g if total is None else add(total, g)
      if (j + 1) % groups == 0:
        big.append(float(sq_norm(total)) / groups ** 2)
        total = None
    estimate = noise_scale.two_batch_estimate(np.mean(small), np.mean(big), small_batch_size,
                                              batch_size, split.num_examples)
    return {"b_simple": estimate.b_simple, "grad_sq_norm": estimate.grad_sq_norm,
            "trace_covariance": estimate.trace_covariance}

  return evaluate


def build(kind: str, section, data, mesh, eval_step, seed: int, name: str):
  """The evaluator of `kind` for the config section `config.evals.<name>`."""
  split = section.get("split", "train")
  if split not in data.splits:
    raise ConfigError(f"config.evals.{name}.split={split!r} is not a split of this data "
                      f"set: {sorted(data.splits)}")
  if kind == "hessian":
    return hessian_evaluator(eval_step, data.split(split), mesh=mesh,
                             batch_size=section.batch_size, order=section.get("order", 20),
                             seed=seed)
  return noise_scale_evaluator(eval_step, data.split(split), mesh=mesh,
                               batch_size=section.batch_size,
                               small_batch_size=section.small_batch_size,
                               num_batches=section.get("num_batches", 4), seed=seed)


def check(kind: str, section, batch_shards: int) -> None:
  """Validates a `hessian` or `noise_scale` evaluator's section."""
  section.read("split", default="train")
  size = section.positive("batch_size", integer=True)
  sizes = {"batch_size": size}
  if kind == "hessian":
    section.positive("order", default=20, integer=True)
  else:
    small = section.positive("small_batch_size", integer=True)
    sizes["small_batch_size"] = small
    if size % small or small == size:
      section.fail("small_batch_size", f"must divide config.evals.*.batch_size={size} and be "
                                       "smaller")
    section.positive("num_batches", default=4, integer=True)
  for field, value in sizes.items():
    if value % batch_shards:
      section.fail(field, f"is not divisible by the {batch_shards} devices the batch is "
                          "split over")
  fields = ("every, split, batch_size, order" if kind == "hessian" else
            "every, split, batch_size, small_batch_size, num_batches")
  section.reject_unread(f"a {kind} evaluator takes {fields}")
