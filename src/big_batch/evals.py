"""Evaluators: host-side functions state -> {metric: float} that a task hands the trainer.

The trainer runs evaluator `name` every `config.evals.<name>.every` steps and after the last
step, writes its metrics as `<name>/<metric>` to metrics.jsonl and TensorBoard, and reports
the last values in summary.json. An evaluator may do anything on the host (run jitted
functions, roll out a policy in an environment); it must not change the state.
"""
from typing import Any, Callable

import jax
import numpy as np

from big_batch.data import pipeline
from big_batch.data.datasets import Split
from big_batch.parallel import distributed
from big_batch.parallel.mesh import BATCH_AXES
from big_batch.parallel import sharding as sharding_lib
from big_batch.scaling.weight_distance import weight_distance as weight_distance_of

Evaluator = Callable[[Any], dict]


def over_split(eval_step: Callable, split: Split, *, batch_size: int, mesh,
               batch_axes=BATCH_AXES) -> Evaluator:
  """The mean of `eval_step`'s metrics over every example of `split`.

  `eval_step(state, batch) -> {metric: sum over the batch's unmasked rows, 'count': rows}`
  sees batches of `batch_size` rows, the last padded and masked (`batch['mask']`). Sums are
  taken on the host in float64, so the mean is exact over any number of batches.
  """
  batch_sharding = sharding_lib.batch_sharding(mesh, batch_axes)
  step = distributed.bound_in_flight(jax.jit(eval_step))

  def evaluate(state) -> dict:
    sums = None
    for batch in pipeline.eval_batches(split, batch_size=batch_size, sharding=batch_sharding):
      out = {k: np.float64(v) for k, v in jax.device_get(step(state, batch)).items()}
      sums = out if sums is None else {k: sums[k] + out[k] for k in sums}
    count = sums.pop("count")
    return {k: float(v / count) for k, v in sums.items()}

  return evaluate


def weight_distance(initial_params: Callable[[], Any],
                    params_of: Callable[[Any], Any] = lambda state: state["params"]) -> Evaluator:
  """{'distance': ||w - w_0||, 'distance/<path>': ||w_i - w0_i||} (Hoffer et al. 2017, Sec. 3).

  `initial_params()` recomputes w_0 (the task's init is a pure function of the seed, so a
  resumed run measures from the same w_0 without checkpointing it); it runs once, jitted and
  sharded like the params. A separate jitted function, so steps that do not log pay nothing.
  """
  cache = {}

  def evaluate(state) -> dict:
    params = params_of(state)
    if not cache:
      shardings = jax.tree.map(lambda x: x.sharding, params)
      cache["initial"] = jax.jit(initial_params, out_shardings=shardings)()
      cache["distance"] = jax.jit(weight_distance_of)
    total, per_leaf = jax.device_get(cache["distance"](params, cache["initial"]))
    return {"distance": float(total),
            **{f"distance/{path}": float(d) for path, d in per_leaf.items()}}

  return evaluate


def check_over_split(section, batch_shards: int, default_split: str) -> None:
  """Validates an `over_split` evaluator's section: `split` and `batch_size`."""
  section.read("split", default=default_split)
  size = section.positive("batch_size", integer=True)
  if size % batch_shards:
    section.fail("batch_size", f"is not divisible by the {batch_shards} devices the batch is "
                               "split over")
  section.reject_unread("an evaluation over a split takes every, split, batch_size")


def check_weight_distance(section) -> None:
  section.reject_unread("the weight-distance evaluator takes only every")
