"""What tasks with one model and one optimizer share: their evaluators and their config checks.

`config.evals.<name>` with `kind` 'split' (the default) evaluates the task's eval step over
the data set split `split` (default: the evaluator's name) in batches of `batch_size`; kind 'weight_distance' (the default
for the name 'weight_distance') logs ||w - w_0|| (Hoffer et al. 2017, Sec. 3); kinds
'hessian' and 'noise_scale' measure the curvature and gradient noise scale of the training loss
on sampled batches (scaling/evaluators.py).
"""
from big_batch import evals, models, optim
from big_batch.checks import ConfigError
from big_batch.parallel import mesh as mesh_lib
from big_batch.scaling import evaluators as scaling_evals
from big_batch.tasks import accumulation

KINDS = ("split", "weight_distance", *scaling_evals.KINDS)


def kind_of(name: str, section) -> str:
  return section.get("kind") or ("weight_distance" if name == "weight_distance" else "split")


def evaluators(config, data, mesh, eval_step, initial_params) -> dict:
  """name -> evaluator for every entry of `config.evals`."""
  out = {}
  for name, section in config.get("evals", {}).items():
    if kind_of(name, section) == "weight_distance":
      out[name] = evals.weight_distance(initial_params)
    elif kind_of(name, section) in scaling_evals.KINDS:
      out[name] = scaling_evals.build(kind_of(name, section), section, data, mesh, eval_step,
                                      config.seed, name)
    else:
      split = section.get("split", name)
      if split not in data.splits:
        raise ConfigError(f"config.evals.{name}.split={split!r} is not a split of this data "
                          f"set: {sorted(data.splits)}")
      out[name] = evals.over_split(eval_step, data.split(split),
                                   batch_size=section.batch_size, mesh=mesh)
  return out


def check(checker, mesh_sizes: dict, batch_sizes, model_registry):
  """Validates model, optimizer, batch accumulation and evaluators of a one-model task."""
  model = checker.section("model")
  models.check(model, model_registry)
  optim.check(checker.section("optimizer"))
  batch = checker.section("batch")
  optim.check_batch_scaling(batch)
  ghost = model.node.get("ghost_batch_size") if model.node.get("norm") == "ghost" else None
  accumulation.check(batch, batch_sizes, mesh_lib.shards(mesh_sizes), ghost)
  top = checker.section()
  if top.has("evals"):
    for name in top.section("evals").keys():
      section = checker.section(f"evals.{name}")
      kind = section.one_of("kind", KINDS, default=kind_of(name, section.node))
      if kind == "weight_distance":
        evals.check_weight_distance(section)
      elif kind in scaling_evals.KINDS:
        scaling_evals.check(kind, section, mesh_lib.shards(mesh_sizes))
      else:
        evals.check_over_split(section, mesh_lib.shards(mesh_sizes), default_split=name)
