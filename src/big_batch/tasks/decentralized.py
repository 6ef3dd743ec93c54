"""Decentralized classification: n workers on a graph, each with its own data and x_i.

Yan et al. 2023 (ICML) "Compressed Decentralized Proximal Stochastic Gradient Method for
Nonconvex Composite Problems with Heterogeneous Data": worker i draws `batch.size / workers`
rows of its own partition per step (decentralized/partition.py: classes {i, 9-i}, or
i.i.d.), takes one step of `config.decentralized.algorithm` (decentralized/algorithms.py:
dproxsgt, cdproxsgt, allreduce, dpsgd, choco) with r = mu ||x||_1 (its prox after each
step), and mixes with its neighbours by ppermute inside shard_map (parallel/gossip.py).
Every state leaf has a leading worker axis [n] sharded over mesh axis `worker` (k = n / D
workers per device), never replicated.

`config.decentralized`:
  algorithm         one of algorithms.ALGORITHMS (default 'dproxsgt');
  workers           n;
  mixing            'ring' (1/3 on self and both neighbours) or an n x n symmetric doubly
                    stochastic matrix (its spectral gap is checked > 0);
  partition         'label' (default) or 'iid';
  prox, mu          'l1' with mu (default 'l1', 1e-4, the authors' FashionMNIST value) or 'none';
  compressor        {name: identity | top_k | random_k | qsgd, fraction | levels} for
                    cdproxsgt and choco (default top_k, fraction 0.3);
  gamma_x, gamma_y  the compressed methods' consensus step sizes (default 0.5, the authors').
`config.optimizer` gives the step size eta_t: name 'sgd' with momentum 0 and weight_decay 0
(any schedule); `grad_clip_norm` clips each worker's gradient (the authors clip at 10).

Train metrics (mean over workers): loss, accuracy on the workers' own rows, `bytes_sent` per
worker per step, W's `spectral_gap` 1 - ||W - 11^T/n||_2; the step moves nothing but
neighbour messages and these scalars.
Evaluators (kind 'split') report loss and accuracy at x-bar, `worker_accuracy` (mean over
the workers' own x_i), `consensus_error` sum_i ||x_i - x-bar||^2, `zeros` (share of exact
zeros in the x_i) and `mean_zeros` (in x-bar).
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from big_batch import models, optim
from big_batch.checks import ConfigError
from big_batch.decentralized import algorithms, compressors, partition, prox as prox_lib
from big_batch.parallel import gossip as gossip_lib
from big_batch.parallel import sharding as sharding_lib
from big_batch.tasks import single_model, supervised
from big_batch.tasks.common import Task

# The config section this task owns (validate names it when another task is chosen).
SECTIONS = ("decentralized",)

AXIS = "worker"
DEFAULTS = dict(algorithm="dproxsgt", mixing="ring", partition="label", prox="l1", mu=1e-4,
                gamma_x=0.5, gamma_y=0.5)


def _get(section, key):
  return section.get(key, DEFAULTS.get(key))


def mixing_matrix(section, n: int) -> np.ndarray:
  """W of `config.decentralized.mixing`, checked."""
  mixing = _get(section, "mixing")
  if isinstance(mixing, str):
    if mixing != "ring":
      raise ValueError(f"config.decentralized.mixing={mixing!r} must be 'ring' or a matrix")
    return gossip_lib.ring_mixing_matrix(n)
  return gossip_lib.check_mixing_matrix(mixing, n, "config.decentralized.mixing")


def _plain(node) -> dict:
  return node.to_dict() if hasattr(node, "to_dict") else dict(node)


def _compressor(section):
  spec = _plain(section.get("compressor") or dict(name="top_k", fraction=0.3))
  return spec.pop("name"), spec


def build(config, data, mesh, total_steps: int) -> Task:
  """The decentralized task of `config.decentralized` for `config.model` on `data`."""
  section = config.decentralized
  n = section.workers
  per_worker = config.batch.size // n
  w = mixing_matrix(section, n)
  g, gap = gossip_lib.gossip(w, mesh.shape[AXIS], AXIS), gossip_lib.spectral_gap(w)
  learning_rate = optim.build(config.optimizer, total_steps, batch=config.batch).learning_rate

  def new_model(rng):
    return models.build(config.model, data.input_shape, data.num_classes, nnx.Rngs(rng))

  graphdef, abstract_params, model_state = nnx.split(
      nnx.eval_shape(lambda: new_model(jax.random.key(0))), nnx.Param, ...)
  model_state = model_state.to_pure_dict()
  abstract_params = abstract_params.to_pure_dict()

  def forward(params, inputs):
    return nnx.merge(graphdef, params, model_state)(inputs)

  def grad_fn(params, batch):
    def loss_fn(params):
      loss, correct = supervised.cross_entropy_and_accuracy(forward(params, batch["input"]),
                                                            batch["label"])
      return loss.mean(), {"accuracy": correct.mean()}
    return jax.value_and_grad(loss_fn, has_aux=True)(params)

  name = _get(section, "algorithm")
  compressor, compressor_params = _compressor(section)
  prox_name = _get(section, "prox")
  prox = prox_lib.build(prox_name, **({"mu": _get(section, "mu")} if prox_name == "l1" else {}))
  algorithm = algorithms.build(
      name, grad_fn=grad_fn, prox=prox, learning_rate=learning_rate, gossip=g,
      compressor=compressor, compressor_params=compressor_params,
      gamma_x=_get(section, "gamma_x"), gamma_y=_get(section, "gamma_y"),
      clip_norm=config.optimizer.get("grad_clip_norm"), abstract_params=abstract_params)
  step = algorithms.sharded_step(algorithm.step, mesh, AXIS)

  def init(rng):
    _, params, _ = nnx.split(new_model(rng), nnx.Param, ...)
    state = algorithm.init(params.to_pure_dict())
    keys = jax.random.split(jax.random.fold_in(rng, 1), n)
    return {**state, "key": jax.random.key_data(keys)}

  def train_step(state, batch):
    per_worker_batch = jax.tree.map(lambda x: x.reshape((n, per_worker) + x.shape[1:]), batch)
    state, metrics = step(state, per_worker_batch)
    return state, {**metrics, "bytes_sent": jnp.float32(algorithm.bytes_sent),
                   "spectral_gap": jnp.float32(gap)}

  labels = data.train.read(np.arange(data.train.num_examples))["label"]
  try:
    parts = partition.partition(labels, n, _get(section, "partition"), data.num_classes,
                                config.seed)
  except ValueError as error:
    raise ConfigError(f"config.decentralized: {error}") from None

  def select(state, candidates):
    return state, partition.sample(parts, candidates, per_worker)

  def eval_step(state, batch):
    x = state["x"]
    mean = jax.tree.map(lambda v: v.mean(0), x)
    loss, correct = supervised.cross_entropy_and_accuracy(forward(mean, batch["input"]),
                                                          batch["label"], batch["mask"])
    per_worker_correct = jax.vmap(lambda p: supervised.cross_entropy_and_accuracy(
        forward(p, batch["input"]), batch["label"], batch["mask"])[1].sum())(x)
    zeros = sum(jnp.sum(v == 0) for v in jax.tree.leaves(mean))
    size = sum(v.size for v in jax.tree.leaves(mean))
    count = batch["mask"].sum()
    # State-wide metrics weighted by the rows, so the split's mean is their value.
    whole = {k: v * count for k, v in algorithms.consensus_metrics(x).items()}
    return {"loss": loss.sum(), "accuracy": correct.sum(),
            "worker_accuracy": per_worker_correct.mean(),
            "mean_zeros": zeros.astype(jnp.float32) / size * count, **whole, "count": count}

  evaluators = single_model.evaluators(config, data, mesh, eval_step,
                                       initial_params=lambda: init(jax.random.key(config.seed)))
  return Task(init=init, train_step=train_step, evaluators=evaluators, select=select,
              shardings=lambda abstract, mesh: sharding_lib.leading_axis(abstract, mesh, AXIS),
              batch_axes=(AXIS,))


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates the supervised fields, an sgd optimizer without momentum or weight decay, the
  mesh's `worker` axis and `config.decentralized`."""
  single_model.check(checker, mesh_sizes, batch_sizes, models.CLASSIFIERS)
  for name, section in checker.config.get("evals", {}).items():
    if single_model.kind_of(name, section) != "split":
      raise ConfigError(f"config.evals.{name}: the decentralized task has only evaluators of "
                        f"kind 'split' (at x-bar), not {single_model.kind_of(name, section)!r}")
  model = checker.section("model")
  if model.node.get("norm", "none") != "none":
    model.fail("norm", "must be 'none': every worker's model is a pure function of its x_i")
  opt = checker.section("optimizer")
  if opt.node.name != "sgd":
    opt.fail("name", "must be 'sgd': the prox step x = prox_{eta r}(x - eta y) is plain SGD")
  for key in ("momentum", "weight_decay"):
    if opt.node.get(key, 0.9 if key == "momentum" else 0.0) != 0:
      opt.fail(key, "must be 0 for the decentralized task (the methods are plain proximal SGD)")
  batch = checker.section("batch")
  for key, default in (("accumulation_steps", 1), ("max_micro_batch", None),
                       ("pool_size", None), ("lr_scaling", "none")):
    if batch.node.get(key, default) != default:
      batch.fail(key, "is not supported by the decentralized task")
  if len(set(batch_sizes)) > 1:
    raise ConfigError(f"{batch.name('schedule')} changes the batch size; the decentralized "
                      "task needs one per-worker batch")
  if AXIS not in mesh_sizes:
    raise ConfigError(f"config.mesh={mesh_sizes} has no {AXIS!r} axis; the decentralized task "
                      "shards its workers over it")
  for axis, size in mesh_sizes.items():
    if axis not in (AXIS, "data") and size != 1:
      raise ConfigError(f"config.mesh.{axis}={size} must be 1: the decentralized task splits "
                        f"over the {AXIS!r} axis only ('data' replicas repeat the workers)")
  section = checker.section("decentralized")
  n = section.positive("workers", integer=True)
  if n % mesh_sizes[AXIS]:
    section.fail("workers", f"must be a multiple of config.mesh.{AXIS}={mesh_sizes[AXIS]}")
  if batch_sizes[0] % n:
    section.fail("workers", f"must divide config.batch.size={batch_sizes[0]} (rows per worker)")
  name = section.one_of("algorithm", algorithms.ALGORITHMS, default=DEFAULTS["algorithm"])
  section.read("mixing", default=DEFAULTS["mixing"])
  try:
    mixing_matrix(section.node, n)
  except ValueError as error:
    raise ConfigError(str(error)) from None
  # 'label' needs n <= num_classes / 2, which only the data set knows: build checks it,
  # before anything compiles.
  section.one_of("partition", partition.PARTITIONS, default=DEFAULTS["partition"])
  kind = section.one_of("prox", tuple(prox_lib.PROXES), default=DEFAULTS["prox"])
  if kind == "l1":
    section.non_negative("mu", default=DEFAULTS["mu"])
  compressor = section.read("compressor", default=None)
  if compressor is not None:
    spec = _plain(compressor)
    cname = spec.pop("name", None)
    if cname not in compressors.COMPRESSORS:
      section.fail("compressor", f"name {cname!r} is not one of {sorted(compressors.COMPRESSORS)}")
    if sorted(spec) != sorted(compressors.PARAMS[cname]):
      section.fail("compressor", f"{cname!r} takes {compressors.PARAMS[cname]}, got {sorted(spec)}")
    if "fraction" in spec and not 0 < spec["fraction"] <= 1:
      section.fail("compressor", f"fraction={spec['fraction']!r} must be in (0, 1]")
    if "levels" in spec and not (isinstance(spec["levels"], int) and 1 <= spec["levels"] <= 127):
      section.fail("compressor", f"levels={spec['levels']!r} must be an integer in [1, 127]")
  for key in ("gamma_x", "gamma_y"):
    value = section.positive(key, default=DEFAULTS[key])
    if value > 1:
      section.fail(key, f"={value} must be in (0, 1]")
  if compressor is not None and name not in algorithms.COMPRESSED:
    section.fail("compressor", f"is only used by {algorithms.COMPRESSED}, not {name!r}")
  section.reject_unread("config.decentralized takes algorithm, workers, mixing, partition, "
                        "prox, mu, compressor, gamma_x, gamma_y")
