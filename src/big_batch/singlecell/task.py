"""scVI and BA-scVI training (Lopez et al. 2018; Diaz-Mejia et al. 2025) as a task.

Each step is the authors' alternating update (PhenomicAI/bascvi, `bascvi_trainer.py`): a
generator step on the VAE (encoder, library encoder, decoder, dispersion),

    L_G = mean_c[-sum_g log p(x_cg | z, l, s)] + w_KL(t) lambda_KL mean_c[KL_z + KL_l]
          - lambda_D w_D(t) L_D,      L_D = sum_tap CE(D_tap(h_tap), s),

then, with the updated VAE and once w_D(t) >= `threshold` (0.01), a discriminator step that
minimises L_D. The generator so maximises the study classifiers' loss at the taps (h_enc,
the encoder's last hidden layer; h_dec, the decoder's first): its gradient from the
adversarial term is -lambda_D w_D times the discriminator objective's. Warm-ups:
w_KL(t) = min(1, t / kl_warmup_steps); w_D(t) = 1 / (1 + exp(-10 (t / warmup_steps - 1/2))).
The KL of l is against N(mean, var) of the log library sizes of the cell's study in the
training split. `adversary.taps = ()` is scVI; `adversary.weight = 0` with taps trains the
same VAE, bit for bit (tests/singlecell/test_sc_task.py).

Config: `model` {hidden, latent, num_layers, dropout}, `loss` {likelihood 'nb' | 'zinb',
kl_weight, kl_warmup_steps}, `adversary` {weight, taps, warmup_steps, threshold},
`optimizers.generator`, `optimizers.discriminator` (optim.build). Evaluators
(`config.evals.<name>`, kind 'integration'): the posterior-mean embedding of every cell of
`split`, scored by `kni.kni_score` (KNI, kNN accuracy, diverse neighbourhoods) with `k` and
`max_prop_same_batch`. Randomness (z, l, dropout) is a function of (seed, step).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from big_batch import optim
from big_batch.checks import ConfigError
from big_batch.parallel import mesh as mesh_lib
from big_batch.singlecell import kni, likelihoods
from big_batch.singlecell.model import TAPS, Adversaries, ScVI
from big_batch.tasks.common import Task

# The config section this task owns (validate names it when another task is chosen).
SECTIONS = ("adversary",)

LIKELIHOODS = ("nb", "zinb")
KINDS = ("integration",)
FEATURES = ("counts", "study", "cell_type")


def kl_warmup(step, warmup_steps):
  """w_KL(t) = min(1, t / T) (T = 0: 1)."""
  if not warmup_steps:
    return jnp.ones((), jnp.float32)
  return jnp.minimum(1.0, step / warmup_steps).astype(jnp.float32)


def adversary_warmup(step, warmup_steps):
  """w_D(t) = 1 / (1 + exp(-10 (t / T - 1/2))), the authors' sigmoid warm-up (T = 0: 1)."""
  if not warmup_steps:
    return jnp.ones((), jnp.float32)
  return jax.nn.sigmoid(10.0 * (step / warmup_steps - 0.5)).astype(jnp.float32)


def library_prior(counts: np.ndarray, study: np.ndarray, num_studies: int):
  """Per study, the mean and variance of log sum_g x_g over its cells (scVI's l prior)."""
  log_library = np.log(np.maximum(counts.sum(1), 1.0))
  mean = np.array([log_library[study == b].mean() for b in range(num_studies)])
  var = np.array([log_library[study == b].var() for b in range(num_studies)])
  return jnp.asarray(mean, jnp.float32), jnp.asarray(np.maximum(var, 1e-4), jnp.float32)


def elbo_terms(out, counts, study, likelihood, prior):
  """Per-cell reconstruction loss -sum_g log p(x_g) and KL(q(z|x)||N(0,I)) + KL(q(l|x)||p(l))."""
  if likelihood == "zinb":
    log_p = likelihoods.log_zinb(counts, out["rate"], out["theta"], out["dropout_logit"])
  else:
    log_p = likelihoods.log_nb(counts, out["rate"], out["theta"])
  prior_mean, prior_var = prior[0][study][:, None], prior[1][study][:, None]
  kl = (likelihoods.kl_normal(out["z_mean"], out["z_var"]).sum(-1)
        + likelihoods.kl_normal(out["l_mean"], out["l_var"], prior_mean, prior_var).sum(-1))
  return -log_p.sum(-1), kl


def discriminator_loss(adversaries, activations, study):
  """L_D = sum over taps of the mean cross-entropy of the study classifier; and accuracies."""
  logits = adversaries(activations)
  losses = {tap: optax.softmax_cross_entropy_with_integer_labels(l, study).mean()
            for tap, l in logits.items()}
  accuracy = {tap: (l.argmax(-1) == study).mean() for tap, l in logits.items()}
  return sum(losses.values(), jnp.zeros(())), accuracy


def _read_all(split) -> dict:
  arrays = split.read(np.arange(split.num_examples))
  missing = [f for f in FEATURES if f not in arrays]
  if missing:
    raise ConfigError(f"config.data must give the features {FEATURES}; {missing} are missing")
  return arrays


def build(config, data, mesh, total_steps: int):
  """The BA-scVI task (module docstring) on a data set of {counts, study, cell_type}."""
  train = _read_all(data.train)
  num_genes = train["counts"].shape[1]
  num_studies = int(train["study"].max()) + 1
  prior = library_prior(train["counts"], train["study"], num_studies)
  loss_cfg, adv = config.loss, config.adversary
  gen_opt = optim.build(config.optimizers.generator, total_steps, batch=config.batch,
                        name="optimizers.generator")
  disc_opt = optim.build(config.optimizers.discriminator, total_steps, batch=config.batch,
                         name="optimizers.discriminator")

  losses = Losses(config, num_genes, num_studies, prior)
  taps, new_models = losses.taps, losses.new_models

  def init(rng):
    vae, adversaries = new_models(rng)
    params = nnx.state(vae).to_pure_dict()
    disc_params = nnx.state(adversaries).to_pure_dict()
    return {"step": jnp.zeros((), jnp.int32), "params": params, "disc_params": disc_params,
            "opt_state": gen_opt.tx.init(params), "disc_opt_state": disc_opt.tx.init(disc_params)}

  def train_step(state, batch):
    step = state["step"]
    key = jax.random.fold_in(jax.random.key(config.seed), step)
    gen_key, disc_key = jax.random.split(key)
    w_kl = kl_warmup(step, loss_cfg.kl_warmup_steps)
    w_d = adversary_warmup(step, adv.warmup_steps)
    (loss, metrics), grads = jax.value_and_grad(losses.generator, has_aux=True)(
        state["params"], state["disc_params"], batch, gen_key, w_kl, w_d)
    updates, opt_state = gen_opt.tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {**metrics, "loss": loss, "kl_weight": w_kl, "adversary_weight": w_d,
               "grad_norm": optax.global_norm(grads).astype(jnp.float32),
               "learning_rate": jnp.asarray(gen_opt.learning_rate(step), jnp.float32)}
    new_state = {**state, "step": step + 1, "params": params, "opt_state": opt_state}
    if taps:
      frozen = jax.lax.stop_gradient(params)
      (l_d, accuracy), disc_grads = jax.value_and_grad(losses.discriminator, has_aux=True)(
          state["disc_params"], frozen, batch, disc_key)
      disc_updates, disc_opt_state = disc_opt.tx.update(disc_grads, state["disc_opt_state"],
                                                        state["disc_params"])
      trained = {"disc_params": optax.apply_updates(state["disc_params"], disc_updates),
                 "disc_opt_state": disc_opt_state}
      active = w_d >= adv.threshold
      new_state.update(jax.tree.map(lambda new, old: jnp.where(active, new, old), trained,
                                    {k: state[k] for k in trained}))
      metrics["disc_loss"] = l_d
      metrics.update({f"disc_accuracy/{tap}": a for tap, a in accuracy.items()})
    return new_state, metrics

  def integration(name, section):
    arrays = _read_all(data.split(section.get("split", name)))

    def evaluate(state):
      z = embedding(config, state["params"], arrays["counts"], num_studies, section.batch_size)
      return kni.kni_score(z, arrays["study"], arrays["cell_type"], k=section.get("k", 50),
                           max_prop_same_batch=section.get("max_prop_same_batch", 0.8))

    return evaluate

  evaluators = {name: integration(name, section)
                for name, section in config.get("evals", {}).items()}
  return Task(init=init, train_step=train_step, evaluators=evaluators)


class Losses:
  """L_G and L_D of the module docstring as pure functions of pure-dict parameters."""

  def __init__(self, config, num_genes: int, num_studies: int, prior):
    self.config, self.prior = config, prior
    self.taps, self.weight = tuple(config.adversary.taps), float(config.adversary.weight)
    self.new_models = lambda rng: make_models(config, num_genes, num_studies, rng)
    self.vae_graph, self.adv_graph = (nnx.split(x)[0] for x in nnx.eval_shape(
        lambda: self.new_models(jax.random.key(0))))

  def forward(self, params, batch, key):
    return nnx.merge(self.vae_graph, params)(batch["counts"], batch["study"], key)

  def generator(self, params, disc_params, batch, key, w_kl, w_d):
    """(L_G, metrics): the negative ELBO with w_KL, minus lambda_D w_D L_D if there are taps."""
    loss_cfg = self.config.loss
    out = self.forward(params, batch, key)
    rec, kl = elbo_terms(out, batch["counts"], batch["study"], loss_cfg.likelihood, self.prior)
    loss = rec.mean() + w_kl * loss_cfg.kl_weight * kl.mean()
    metrics = {"reconstruction": rec.mean(), "kl": kl.mean()}
    if self.taps:
      l_d, _ = discriminator_loss(nnx.merge(self.adv_graph, disc_params), out, batch["study"])
      loss = loss - self.weight * w_d * l_d
      metrics["generator_disc_loss"] = l_d
    return loss, metrics

  def discriminator(self, disc_params, params, batch, key):
    """(L_D, accuracies) of the adversaries on the VAE `params`' taps (differentiable in both)."""
    out = self.forward(params, batch, key)
    return discriminator_loss(nnx.merge(self.adv_graph, disc_params),
                              {t: out[t] for t in self.taps}, batch["study"])


def make_models(config, num_genes: int, num_studies: int, rng):
  """(ScVI, Adversaries) of `config.model` and `config.adversary.taps`."""
  m = config.model
  vae = ScVI(num_genes, num_studies, hidden=m.hidden, latent=m.latent, num_layers=m.num_layers,
             dropout=m.dropout, rngs=nnx.Rngs(rng))
  adversaries = Adversaries(tuple(config.adversary.taps), m.hidden, num_studies,
                            nnx.Rngs(jax.random.fold_in(rng, 1)))
  return vae, adversaries


_EMBED = {}


def embedding(config, params, counts: np.ndarray, num_studies: int,
              batch_size: int = 1024) -> np.ndarray:
  """The posterior means E[z|x] of the VAE `params` for `counts`, in chunks of `batch_size`."""
  num_genes = counts.shape[1]
  cache_key = (tuple(sorted(config.model.items())), num_genes, num_studies)
  if cache_key not in _EMBED:
    graph = nnx.split(nnx.eval_shape(
        lambda: make_models(config, num_genes, num_studies, jax.random.key(0))[0]))[0]
    _EMBED[cache_key] = jax.jit(lambda p, x: nnx.merge(graph, p).embed(x))
  embed = _EMBED[cache_key]
  return np.concatenate([np.asarray(embed(params, counts[i:i + batch_size]))
                         for i in range(0, len(counts), batch_size)])


def check(checker, mesh_sizes: dict, batch_sizes) -> None:
  """Validates model, loss, adversary, both optimizers and the integration evaluators."""
  del batch_sizes
  model = checker.section("model")
  for key in ("hidden", "latent", "num_layers"):
    model.positive(key, integer=True)
  rate = model.read("dropout")
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
    model.fail("dropout", "must be a number in [0, 1)")
  model.reject_unread("the BA-scVI model takes hidden, latent, num_layers, dropout")
  loss = checker.section("loss")
  loss.one_of("likelihood", LIKELIHOODS)
  loss.non_negative("kl_weight")
  loss.non_negative("kl_warmup_steps", integer=True)
  loss.reject_unread("config.loss takes likelihood, kl_weight, kl_warmup_steps")
  adv = checker.section("adversary")
  adv.non_negative("weight")
  taps = adv.read("taps")
  if not isinstance(taps, (tuple, list)) or len(set(taps)) != len(taps) or any(
      t not in TAPS for t in taps):
    adv.fail("taps", f"must be distinct names from {TAPS} (empty: scVI)")
  adv.non_negative("warmup_steps", integer=True)
  adv.non_negative("threshold")
  adv.reject_unread("config.adversary takes weight, taps, warmup_steps, threshold")
  for name in ("generator", "discriminator"):
    optim.check(checker.section(f"optimizers.{name}"))
  checker.section("optimizers").reject_unread("config.optimizers takes generator, discriminator")
  optim.check_batch_scaling(checker.section("batch"))
  top = checker.section()
  if top.has("evals"):
    shards = mesh_lib.shards(mesh_sizes)
    for name in top.section("evals").keys():
      section = checker.section(f"evals.{name}")
      section.one_of("kind", KINDS, default="integration")
      section.read("split", default=name)
      size = section.positive("batch_size", integer=True)
      if size % shards:
        section.fail("batch_size", f"is not divisible by the {shards} devices")
      section.positive("k", default=50, integer=True)
      prop = section.read("max_prop_same_batch", default=0.8)
      if isinstance(prop, bool) or not isinstance(prop, (int, float)) or not 0 < prop <= 1:
        section.fail("max_prop_same_batch", "must be a number in (0, 1]")
      section.reject_unread("an integration evaluator takes every, kind, split, batch_size, "
                            "k, max_prop_same_batch")
