"""Classification whose batch grows by a batch-size test: AdAdaGrad (Lau, Liu & Kolar 2024).

The supervised task (softmax cross-entropy on `config.model`) with a batch-size controller
(arXiv 2402.11215, Alg. 1; timlautk/AdAdaGrad `main.py`): every `test_interval` steps the
step's own batch, at the pre-update weights, runs a test of `scaling/batch_tests.py`, and
the next batch has

    b_{k+1} = min(max(b_k, ceil(proposal)), max_batch_size)

rows, from b_0 = `config.batch.size`. AdaGrad (`optax.adagrad`) or AdaGrad-Norm
(`optim.adagrad_norm`) make the updates (`config.optimizer`). The trainer rounds the size up
to `config.batch.grid` (with `grid_geometric`, to grid * 2^n: one compile per size) and, past
`config.batch.max_micro_batch` rows per device, splits the batch into micro-batches
(gradient accumulation).

`config.adaptive_batch`:
  test:           'norm' (default), 'inner_product', 'orthogonality', 'augmented_inner_product'
                  or 'coordinate' (batch_tests.TESTS);
  eta, theta, nu: the tests' tolerances (default 0.1 each, the authors' defaults);
  test_interval:  steps between tests (default 1);
  max_batch_size: the cap.

The size is in the state (`state['batch_size']`, int32), so checkpoints carry it and a
resumed run is bitwise the uninterrupted one; `Task.batch_size` reads it: one device sync
per step. `state['batch_test']` holds the latest test's statistics, in every step's metrics
as `adaptive_batch/{variance, grad_sq_norm, inner_product_variance, proposed}` with
`adaptive_batch/next_batch_size` (before the trainer's rounding); the trainer logs their mean
over each `log_every` window, and `train/batch_size` (log_every=1 gives the exact trace).

Per-example gradients are `jax.vmap(jax.grad)` on each micro-batch inside the accumulation
scan (tasks/accumulation.py), reduced there to their moments, so memory holds those of one
micro-batch only. The inner-product tests take a second pass, a jvp per micro-batch. Rows
must not interact: the model must have norm='none' (a batch-norm gradient is no sum of
per-example gradients). A batch of `max_batch_size` rows or more runs no test.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from big_batch import models, optim
from big_batch.scaling import batch_tests
from big_batch.tasks import single_model
from big_batch.tasks.accumulation import accumulate_gradients, batch_shards, micro_batch, steps_for
from big_batch.tasks.common import Task, apply_gradients, nnx_model
from big_batch.tasks.supervised import cross_entropy_and_accuracy

# The config section this task owns (validate names it when another task is chosen).
SECTIONS = ("adaptive_batch",)

_STATISTICS = ("variance", "grad_sq_norm", "inner_product_variance", "proposed")


def build(config, data, mesh, total_steps: int) -> Task:
  """The adaptive-batch classification task for `config.model` on `data`."""
  control = config.adaptive_batch
  test = control.get("test", "norm")
  tolerances = {name: control.get(name, 0.1) for name in ("eta", "theta", "nu")}
  interval = control.get("test_interval", 1)
  max_batch_size = control.max_batch_size
  accumulation_steps = config.batch.get("accumulation_steps", 1)
  max_micro_batch = config.batch.get("max_micro_batch")

  def new_model(rng):
    return models.build(config.model, data.input_shape, data.num_classes, nnx.Rngs(rng))

  optimizer = optim.build(config.optimizer, total_steps, batch=config.batch)
  graphdef, model_init = nnx_model(new_model, optimizer.tx)

  def init(rng):
    return {**model_init(rng), "batch_size": jnp.asarray(config.batch.size, jnp.int32),
            "batch_test": {name: jnp.zeros((), jnp.float32) for name in _STATISTICS}}

  def per_example(params, model_state, batch):
    logits = nnx.merge(graphdef, params, model_state)(batch["input"])
    return cross_entropy_and_accuracy(logits, batch["label"])

  def loss_fn(params, model_state, batch):
    loss, correct = per_example(params, model_state, batch)
    return loss.mean(), (model_state, {"accuracy": correct.mean()})

  def test_statistics(params, model_state, batch, gradient, steps):
    """The test on the whole batch, from the micro-batch-averaged gradient moments."""
    rows = jax.tree.leaves(batch)[0].shape[0]
    products = None
    if test in batch_tests.INNER_PRODUCT_TESTS:
      losses = lambda p, rows: per_example(p, model_state, rows)[0]
      shards = batch_shards()

      def one(index):
        part = batch if steps == 1 else micro_batch(batch, index, steps, shards)
        return batch_tests.moments(
            batch_tests.inner_products(losses, params, part, gradient.mean))

      products = batch_tests.mean_of(jax.lax.map(one, jnp.arange(steps)))
    return batch_tests.statistics(test, gradient, rows, products=products, **tolerances)

  def train_step(state, batch):
    rows = jax.tree.leaves(batch)[0].shape[0]
    steps = steps_for(rows, None, accumulation_steps, max_micro_batch)
    params, model_state = state["params"], state["model_state"]
    latest, size = state["batch_test"], state["batch_size"]
    if rows >= max_batch_size:  # As big as it gets: no test.
      loss, (model_state, aux), grads = accumulate_gradients(loss_fn, params, model_state,
                                                             batch, steps)
    else:
      testing = state["step"] % interval == 0
      frozen = jax.lax.stop_gradient(params)

      def loss_and_moments(params, model_state, part):
        loss, (model_state, aux) = loss_fn(params, model_state, part)
        gradient = jax.lax.cond(
            testing,
            lambda: batch_tests.moments(batch_tests.per_example_gradients(
                lambda p, rows: loss_fn(p, model_state, rows)[0], frozen, part)),
            lambda: batch_tests.Moments(*[jax.tree.map(jnp.zeros_like, frozen)] * 3))
        return loss, (model_state, {**aux, "moments": gradient})

      loss, (model_state, aux), grads = accumulate_gradients(loss_and_moments, params,
                                                             model_state, batch, steps)
      gradient = aux.pop("moments")
      latest = jax.lax.cond(
          testing, lambda: test_statistics(frozen, model_state, batch, gradient, steps),
          lambda: latest)
      size = jnp.where(testing, batch_tests.next_batch_size(
          rows, latest["proposed"], max_batch_size), size)
    params, opt_state, metrics = apply_gradients(optimizer, params, state["opt_state"], grads,
                                                 state["step"])
    new_state = {**state, "step": state["step"] + 1, "params": params, "opt_state": opt_state,
                 "model_state": model_state, "batch_size": size, "batch_test": latest}
    logged = {f"adaptive_batch/{name}": value for name, value in latest.items()}
    return new_state, {**metrics, **aux, **logged, "loss": loss,
                       "adaptive_batch/next_batch_size": size.astype(jnp.float32)}

  def eval_step(state, batch):
    loss, correct = per_example(state["params"], state["model_state"], batch)
    mask = batch["mask"]
    return {"loss": (loss * mask).sum(), "accuracy": (correct * mask).sum(),
            "count": mask.sum()}

  evaluators = single_model.evaluators(
      config, data, mesh, eval_step,
      initial_params=lambda: model_init(jax.random.key(config.seed))["params"])
  return Task(init=init, train_step=train_step, evaluators=evaluators,
              batch_size=lambda state: state["batch_size"])


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates model (norm 'none'), optimizer, batch (no schedule, no lr scaling, at least 2
  rows), evaluators, and `config.adaptive_batch`."""
  # The trainer rounds every size the task asks for to one that splits over the devices
  # and micro-batches, so no size is checked here.
  del batch_sizes
  single_model.check(checker, mesh_sizes, (), models.CLASSIFIERS)
  model = checker.section("model")
  if model.node.get("norm", "none") != "none":
    model.fail("norm", "must be 'none' for adaptive batch sizes: the tests need per-example "
                       "gradients, and batch norm mixes the rows of a batch")
  batch = checker.section("batch")
  if batch.node.get("schedule"):
    batch.fail("schedule", "must be empty: config.adaptive_batch decides the batch sizes")
  if batch.node.get("lr_scaling", "none") != "none":
    batch.fail("lr_scaling", "must be 'none': the batch grows during the run and the "
                             "learning rate is not rescaled with it")
  size = batch.node.size
  if size < 2:
    batch.fail("size", "must be at least 2: the tests need the sample variance of the batch")
  control = checker.section("adaptive_batch")
  control.one_of("test", batch_tests.TESTS, default="norm")
  for name in ("eta", "theta", "nu"):
    control.positive(name, default=0.1)
  control.positive("test_interval", default=1, integer=True)
  cap = control.positive("max_batch_size", integer=True)
  if cap < size:
    control.fail("max_batch_size", f"is smaller than config.batch.size={size}")
  control.reject_unread("adaptive_batch fields: test, eta, theta, nu, test_interval, "
                        "max_batch_size")
