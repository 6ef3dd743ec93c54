"""Models by name: `build(config.model, input_shape, num_classes, rngs)` for classifiers,
`build_language_model(config.model, rngs)` for language models."""
from big_batch.models.cnn1d import CNN1D
from big_batch.models.linear_attention_lm import LinearAttentionLM
from big_batch.models.mlp import MLP

CLASSIFIERS = {"cnn1d": CNN1D, "mlp": MLP}
LANGUAGE_MODELS = {"linear_attention_lm": LinearAttentionLM}


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
