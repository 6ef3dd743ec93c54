"""Models by name: `build(config.model, input_shape, num_classes, rngs)` for classifiers,
`build_language_model(config.model, rngs)` for language models. Flax NNX modules; the other
fields of `config.model` are keyword arguments of the model's constructor."""
import inspect

from big_batch.models.cnn1d import CNN1D
from big_batch.models.linear_attention_lm import SEQUENCE_PARALLEL, LinearAttentionLM
from big_batch.models.mlp import MLP
from big_batch.models.normalization import NORM_KINDS
from big_batch.models.resnet import ResNet

CLASSIFIERS = {"cnn1d": CNN1D, "mlp": MLP, "resnet": ResNet}
LANGUAGE_MODELS = {"linear_attention_lm": LinearAttentionLM}
_NOT_FIELDS = {"self", "input_shape", "num_classes", "rngs"}


def build(config, input_shape, num_classes, rngs):
  """The classifier named `config.name`, built with the other fields of `config` as kwargs."""
  if config.name not in CLASSIFIERS:
    raise ValueError(f"config.model.name={config.name!r} is not one of {sorted(CLASSIFIERS)}")
  kwargs = {k: v for k, v in config.items() if k != "name"}
  return CLASSIFIERS[config.name](tuple(input_shape), num_classes, **kwargs, rngs=rngs)


def build_language_model(config, rngs):
  """The language model named `config.name`, built with the other fields of `config` as kwargs."""
  if config.name not in LANGUAGE_MODELS:
    raise ValueError(f"config.model.name={config.name!r} is not one of {sorted(LANGUAGE_MODELS)}")
  kwargs = {k: v for k, v in config.items() if k != "name"}
  return LANGUAGE_MODELS[config.name](**kwargs, rngs=rngs)


def check(section, registry) -> type:
  """Validates `config.model` against the model class `registry[name]`; returns the class.

  Every field but `name` must be a parameter of the class's constructor. Normalization
  (`norm`, `ghost_batch_size`) and sequence-parallel fields are checked where present.
  """
  cls = registry[section.one_of("name", registry)]
  accepted = sorted(set(inspect.signature(cls.__init__).parameters) - _NOT_FIELDS)
  for key in section.keys():
    if key in accepted:
      section.read(key)
  section.reject_unread(f"{cls.__name__} takes {accepted}")
  if section.has("norm"):
    norm = section.one_of("norm", NORM_KINDS)
    ghost = section.read("ghost_batch_size", default=None)
    if ghost is not None:
      if norm != "ghost":
        section.fail("ghost_batch_size", f"needs config.model.norm='ghost', not {norm!r}")
      section.positive("ghost_batch_size", integer=True)
  if section.has("sequence_parallel"):
    section.one_of("sequence_parallel", SEQUENCE_PARALLEL)
  return cls
