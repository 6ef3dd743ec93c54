"""ConAdv (Liu, Chen, Cheng, Hsieh & You 2022, "Concurrent Adversarial Learning for Large-Batch
Training"): adversarial training whose perturbations are built from weights one step old, so
a step's input-gradient pass and weight-gradient pass do not depend on each other.

The training loss of a batch b = (x, y) with perturbation delta (`config.adversary`):

    L(w; b, delta) = (1 - alpha) mean_i l(w; x_i + delta_i, y_i) + alpha mean_i l(w; x_i, y_i)

Staleness tau = 0 is DisAdv, the paper's sequential baseline (Fig. 1a): the step that receives
b_t computes delta_t = attack(w_t; b_t), then g_t = grad_w L(w_t; b_t, delta_t). tau = 1 is
ConAdv (Fig. 1b): update j (w_j -> w_{j+1}, on batch b_j) uses delta_j = attack(w_{j-1}; b_j),
built one step earlier. The step that receives b_{j+1} finds (b_j, delta_j) in the state and
computes, from w_j alone,

    g_j = grad_w L(w_j; b_j, delta_j)   and   delta_{j+1} = attack(w_j; b_{j+1}),

updates the weights with g_j and stores (b_{j+1}, delta_{j+1}). Both computations read only
w_j and stored or incoming data, so neither waits for the other, and no batch is read before
the step it arrives in. The stored batch is task state: checkpointed, and sharded along the
batch axes like a batch.

The first step of a tau = 1 run has no stored batch: it only perturbs b_0 at w_0 and stores
it; the weights, optimizer state, BN statistics and update count are left as they were (the
pass over the zero-filled stored batch runs, so every step has one compiled shape, and is
discarded), and update 0 is the one that uses a perturbation of its own weights. The first
step's metrics are the clean loss and accuracy of b_0 at w_0, with zero norms. A run of N
trainer steps so makes N - 1 updates, on b_0 .. b_{N-2}, and the optimizer's schedule spans
those N - 1 updates; b_{N-1} is perturbed and never trained on. With epsilon = 0 the
perturbation is exactly 0, so tau = 0 is the supervised step on each batch (bitwise), and
tau = 1 after N + 1 steps is the supervised run of N steps on the same stream (same batches,
same schedule) up to float rounding.

`config.adversary` fields:
  staleness      tau, 0 (DisAdv) or 1 (ConAdv)
  attack         'fgsm' (one step of size epsilon) or 'pgd' (`steps` steps of `step_size`),
                 both from delta = 0 (tasks/adversarial.py)
  norm, epsilon  the ball: 'linf' or 'l2', radius in input units
  clean_weight   alpha in [0, 1) (default 0: the adversarial loss alone)
  warmup_steps   the first updates train with delta = 0 (default 0); they cost as much as the
                 others, since the attack still runs
  bn_stats       which forward's batch statistics the BN running averages (used at
                 evaluation) follow: 'adversarial' (x + delta, the default), 'clean' (x, an
                 extra forward when alpha = 0) or 'both' (one EMA step towards their mean).
                 Every forward normalizes with its own batch's statistics; attack passes use
                 batch statistics too and never move the running averages.
  concurrency    tau = 1 only, how the two computations share the step. 'independent'
                 (default): two passes with no data dependency between them, which XLA may
                 run at the same time (XLA:CPU does, on its cores). 'batched': one pass
                 vmapped over the stacked inputs [x + delta ; (x) ; x_t], so the forward and
                 the input gradient see all members' rows at once; each member keeps its
                 own BN statistics, and the weight gradient is taken per member, so the
                 attack member stays out of the update. benchmarks/conadv_step.py measures
                 both: on XLA:CPU the batched form is the slower (its per-member weight
                 gradients are batched convolutions).
With tau = 1 the batch size must be constant (the stored batch has one shape). Gradient
accumulation (`config.batch.accumulation_steps`, `max_micro_batch`) runs both computations
micro-batch by micro-batch in one scan: micro-batch j of the stored batch (with its
perturbation) gives its weight gradient and micro-batch j of the incoming batch its
perturbation, both at w_j (tasks/accumulation.py's split, so each device keeps its rows);
the gradients are averaged and the perturbations joined back in row order. With k = 1 it
is the step above; with k > 1 and rows that do not interact (no BN, or Ghost BN within a
micro-batch) the same update up to rounding.

Evaluation is the supervised task's (`config.evals`): clean inputs, running BN statistics.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from big_batch import models, optim
from big_batch.checks import ConfigError
from big_batch.parallel import sharding as sharding_lib
from big_batch.tasks import adversarial, single_model, supervised
from big_batch.tasks.accumulation import batch_shards, join_micro_batches, micro_batch, steps_for
from big_batch.tasks.common import Task, apply_gradients, gradient_step, nnx_model

# The config section this task owns (validate names it when another task is chosen).
SECTIONS = ("adversary",)

ATTACKS = ("fgsm", "pgd")
BN_STATS = ("adversarial", "clean", "both")
CONCURRENCY = ("batched", "independent")
# The state a tau = 1 step leaves as it was on its first call.
_UPDATED = ("step", "params", "model_state", "opt_state")


class Adversary(NamedTuple):
  """The settings of `config.adversary`, defaults filled in (module docstring)."""
  staleness: int
  norm: str
  epsilon: float
  step_size: float
  steps: int
  clean_weight: float
  warmup_steps: int
  bn_stats: str
  concurrency: str

  @classmethod
  def from_config(cls, section) -> "Adversary":
    fgsm = section.attack == "fgsm"
    return cls(staleness=section.staleness, norm=section.norm, epsilon=section.epsilon,
               step_size=section.epsilon if fgsm else section.step_size,
               steps=1 if fgsm else section.steps,
               clean_weight=section.get("clean_weight") or 0.0,
               warmup_steps=section.get("warmup_steps") or 0,
               bn_stats=section.get("bn_stats") or "adversarial",
               concurrency=section.get("concurrency") or "independent")

  @property
  def members(self) -> tuple[str, ...]:
    """The forwards the training loss takes: on x + delta, and on x if alpha or BN need it."""
    clean = self.clean_weight > 0 or self.bn_stats != "adversarial"
    return ("adversarial", "clean") if clean else ("adversarial",)

  @property
  def member_weights(self) -> tuple[float, ...]:
    return (1.0 - self.clean_weight, self.clean_weight)[:len(self.members)]

  def attack(self, input_grad, x, first_grad=None):
    return adversarial.pgd(input_grad, x, norm=self.norm, epsilon=self.epsilon,
                           step_size=self.step_size, steps=self.steps, first_grad=first_grad)

  def warm(self, delta, step):
    """delta, or 0 during the first `warmup_steps` updates."""
    if not self.warmup_steps:
      return delta
    return jnp.where(step >= self.warmup_steps, delta, jnp.zeros_like(delta))


def build(config, data, mesh, total_steps: int) -> Task:
  """DisAdv (staleness 0) or ConAdv (staleness 1) training of `config.model`."""
  adversary = Adversary.from_config(config.adversary)
  updates = total_steps - adversary.staleness
  if updates < 1:
    raise ConfigError(f"a run of {total_steps} steps with config.adversary.staleness="
                      f"{adversary.staleness} makes no update: train for more steps")
  optimizer = optim.build(config.optimizer, updates, batch=config.batch)

  def new_model(rng):
    return models.build(config.model, data.input_shape, data.num_classes, nnx.Rngs(rng))

  graphdef, init_model = nnx_model(new_model, optimizer.tx)
  members, weights = adversary.members, adversary.member_weights

  def member_loss(params, model_state, inputs, labels):
    """Mean cross-entropy of one train-mode forward; aux (model state after it, accuracy)."""
    model = nnx.merge(graphdef, params, model_state)
    model.train()
    loss, correct = supervised.cross_entropy_and_accuracy(model(inputs), labels)
    return loss.mean(), (nnx.split(model, nnx.Param, ...)[2].to_pure_dict(), correct.mean())

  def input_grad(params, model_state, labels):
    return jax.grad(lambda x: member_loss(params, model_state, x, labels)[0])

  def member_inputs(batch, delta):
    return jnp.stack([batch["input"] + delta, batch["input"]][:len(members)])

  def running_statistics(states):
    """The BN state to keep, from the training members' states (leading axis: member)."""
    by_kind = {kind: jax.tree.map(lambda s, i=i: s[i], states) for i, kind in enumerate(members)}
    if adversary.bn_stats == "both":
      return jax.tree.map(lambda a, c: (a + c) / 2, by_kind["adversarial"], by_kind["clean"])
    return by_kind[adversary.bn_stats]

  def step_metrics(losses, accuracies, delta):
    loss = sum(w * l for w, l in zip(weights, losses))
    return loss, {"accuracy": accuracies[0],
                  "perturbation_norm": adversarial.perturbation_norm(delta, adversary.norm)}

  def training_loss(params, model_state, batch, delta):
    """L(w; batch, delta) with shared weights; aux (BN state per `bn_stats`, metrics)."""
    if len(members) == 1:  # Exactly the supervised computation when delta = 0.
      loss, (state, accuracy) = member_loss(params, model_state, batch["input"] + delta,
                                            batch["label"])
      states, losses, accuracies = jax.tree.map(lambda s: s[None], state), [loss], [accuracy]
    else:
      labels = jnp.stack([batch["label"]] * len(members))
      losses, (states, accuracies) = jax.vmap(member_loss, in_axes=(None, None, 0, 0))(
          params, model_state, member_inputs(batch, delta), labels)
    loss, metrics = step_metrics(losses, accuracies, delta)
    return loss, (running_statistics(states), metrics)

  def disadv_step(state, batch):
    def loss_fn(params, model_state, batch):
      # delta is a constant of the weight gradient (Danskin): attack the stopped weights.
      frozen = jax.lax.stop_gradient(params)
      delta = adversary.attack(input_grad(frozen, model_state, batch["label"]), batch["input"])
      return training_loss(params, model_state, batch, adversary.warm(delta, state["step"]))

    return gradient_step(loss_fn, optimizer, state, batch,
                         config.batch.get("accumulation_steps", 1),
                         config.batch.get("max_micro_batch"))

  def batched_passes(params, model_state, stored, delta, batch):
    """The training members on the stored batch and the attack's first input gradient on
    the incoming one, as one pass vmapped over the members: the forward and the input
    gradient see all members' rows at once, the weight gradient is taken per member so the
    attack member stays out of the update."""
    count = len(members)
    inputs = jnp.concatenate([member_inputs(stored, delta), batch["input"][None]])
    labels = jnp.stack([stored["label"]] * count + [batch["label"]])
    grad_fn = jax.value_and_grad(member_loss, argnums=(0, 2), has_aux=True)
    (losses, (states, accuracies)), (param_grads, input_grads) = jax.vmap(
        grad_fn, in_axes=(None, None, 0, 0))(params, model_state, inputs, labels)
    scale = jnp.asarray(weights, jnp.float32)
    grads = jax.tree.map(lambda g: jnp.tensordot(scale, g[:count], axes=1).astype(g.dtype),
                         param_grads)
    loss, metrics = step_metrics(losses[:count], accuracies[:count], delta)
    training = (loss, grads, running_statistics(jax.tree.map(lambda s: s[:count], states)),
                metrics)
    return training, (input_grads[count], losses[count], accuracies[count])

  def independent_passes(params, model_state, stored, delta, batch):
    """The same two computations as `batched_passes`, as two passes."""
    (loss, (new_state, metrics)), grads = jax.value_and_grad(training_loss, has_aux=True)(
        params, model_state, stored, delta)
    (attack_loss, (_, attack_accuracy)), first_grad = jax.value_and_grad(
        member_loss, argnums=2, has_aux=True)(params, model_state, batch["input"],
                                              batch["label"])
    return (loss, grads, new_state, metrics), (first_grad, attack_loss, attack_accuracy)

  passes = batched_passes if adversary.concurrency == "batched" else independent_passes

  def both_computations(params, model_state, stored, delta_used, batch):
    """The weight gradient of (stored, delta_used) and the perturbation of `batch`, at the
    same weights: (loss, grads, model state, metrics), (delta, attack loss, accuracy)."""
    training, (first_grad, attack_loss, attack_accuracy) = passes(
        params, model_state, stored, delta_used, batch)
    delta = adversary.attack(input_grad(params, model_state, batch["label"]), batch["input"],
                             first_grad=first_grad)
    return training, (delta, attack_loss, attack_accuracy)

  def accumulated(params, model_state, stored, delta_used, batch):
    """`both_computations` in k micro-batches (module docstring), k from `config.batch`."""
    shards = batch_shards()
    steps = steps_for(batch["label"].shape[0], shards,
                      config.batch.get("accumulation_steps", 1),
                      config.batch.get("max_micro_batch"))
    if steps == 1:
      return both_computations(params, model_state, stored, delta_used, batch)

    def body(carry, index):
      grad_sum, model_state = carry
      part = lambda tree: micro_batch(tree, index, steps, shards)  # noqa: E731
      (loss, grads, model_state, metrics), attack = both_computations(
          params, model_state, part(stored), part(delta_used), part(batch))
      grad_sum = jax.tree.map(lambda total, g: total + g.astype(total.dtype), grad_sum, grads)
      return (grad_sum, model_state), (loss, metrics, attack)

    zeros = jax.tree.map(
        lambda p: jnp.zeros(p.shape, jnp.promote_types(p.dtype, jnp.float32)), params)
    (grad_sum, model_state), (losses, metrics, (deltas, attack_losses, attack_accuracies)) = (
        jax.lax.scan(body, (zeros, model_state), jnp.arange(steps)))
    grads = jax.tree.map(lambda g, p: (g / steps).astype(p.dtype), grad_sum, params)
    training = (losses.mean(), grads, model_state, jax.tree.map(lambda m: m.mean(0), metrics))
    return training, (join_micro_batches(deltas, steps, shards), attack_losses.mean(),
                      attack_accuracies.mean())

  def conadv_step(state, batch):
    params, model_state, stored = state["params"], state["model_state"], state["stored"]
    delta_used = adversary.warm(stored["perturbation"], state["step"])
    (loss, grads, new_model_state, metrics), (delta, attack_loss, attack_accuracy) = accumulated(
        params, model_state, stored, delta_used, batch)
    new_params, opt_state, norms = apply_gradients(optimizer, params, state["opt_state"],
                                                   grads, state["step"])
    updated = {"step": state["step"] + 1, "params": new_params,
               "model_state": new_model_state, "opt_state": opt_state}
    primed = state["primed"]
    kept = jax.tree.map(lambda new, old: jnp.where(primed, new, old), updated,
                        {k: state[k] for k in _UPDATED})
    metrics = {**norms, **metrics, "loss": loss}
    first = {"loss": attack_loss, "accuracy": attack_accuracy,
             "param_norm": optax.global_norm(params).astype(jnp.float32)}
    metrics = {k: jnp.where(primed, v, first.get(k, jnp.zeros_like(v)))
               for k, v in metrics.items()}
    metrics["learning_rate"] = norms["learning_rate"]
    new_stored = {"input": batch["input"], "label": batch["label"], "perturbation": delta}
    return {**state, **kept, "stored": new_stored, "primed": jnp.ones((), bool)}, metrics

  def init(rng):
    state = init_model(rng)
    if adversary.staleness:
      rows = config.batch.size
      inputs = jnp.zeros((rows, *data.input_shape), jnp.float32)
      state["stored"] = {"input": inputs, "label": jnp.zeros((rows,), jnp.int32),
                         "perturbation": jnp.zeros_like(inputs)}
      state["primed"] = jnp.zeros((), bool)
    return state

  def shardings(abstract_state, mesh):
    """The config's policy for weights and optimizer state; the stored batch split like a batch."""
    out = sharding_lib.state_shardings(abstract_state, mesh, config.get("sharding", "replicated"),
                                       config.get("sharding_rules", ()))
    out["stored"] = jax.tree.map(lambda _: sharding_lib.batch_sharding(mesh),
                                 abstract_state["stored"])
    return out

  # Evaluation is supervised training's: clean inputs, running BN statistics.
  evaluators = supervised.build(config, data, mesh, updates).evaluators
  if adversary.staleness:
    return Task(init=init, train_step=conadv_step, evaluators=evaluators, shardings=shardings)
  return Task(init=init, train_step=disadv_step, evaluators=evaluators)


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates model, optimizer, batch, evals (as supervised) and `config.adversary`."""
  single_model.check(checker, mesh_sizes, batch_sizes, models.CLASSIFIERS)
  section = checker.section("adversary")
  staleness = section.one_of("staleness", (0, 1))
  attack = section.one_of("attack", ATTACKS)
  section.one_of("norm", adversarial.NORMS)
  section.non_negative("epsilon")
  if attack == "pgd":
    section.positive("steps", integer=True)
    section.positive("step_size")
  else:
    for key in ("steps", "step_size"):
      if section.read(key, default=None) is not None:
        section.fail(key, "is for attack='pgd'; FGSM takes one step of size epsilon")
  alpha = section.read("clean_weight", default=0.0)
  if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < 1:
    section.fail("clean_weight", "must be a number in [0, 1)")
  section.non_negative("warmup_steps", default=0, integer=True)
  section.one_of("bn_stats", BN_STATS, default="adversarial")
  if staleness == 1:
    section.one_of("concurrency", CONCURRENCY, default="independent")
    _check_stored_batch(checker.section("batch"), batch_sizes)
  elif section.read("concurrency", default=None) is not None:
    section.fail("concurrency", "applies to staleness 1 only")
  section.reject_unread(f"config.adversary takes staleness, attack, norm, epsilon, steps, "
                        f"step_size, clean_weight, warmup_steps, bn_stats, concurrency")


def _check_stored_batch(batch, batch_sizes) -> None:
  """Staleness 1 keeps one batch in the state: one batch size."""
  if len(set(batch_sizes)) > 1:
    raise ConfigError(f"{batch.name('schedule')} changes the batch size "
                      f"({sorted(set(batch_sizes))}), but config.adversary.staleness=1 stores "
                      "each batch for the next step and needs one size")
