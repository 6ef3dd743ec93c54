"""Batch-size rules of big_batch.scaling.learning_rate."""
import pytest

from big_batch.scaling.learning_rate import (max_learning_rate, scale_learning_rate,
                                            transfer_by_curvature)


@pytest.mark.parametrize("rule, expected",
                         [("linear", 0.1 * 32), ("sqrt", 0.1 * 32 ** 0.5), ("none", 0.1)])
def test_rules(rule, expected):
  assert scale_learning_rate(0.1, 256, 8192, rule) == pytest.approx(expected, rel=1e-12)


def test_linear_is_the_default_and_goyal_et_al_value():
  """Goyal et al. 2017: 0.1 at batch 256 -> 3.2 at batch 8192."""
  assert scale_learning_rate(0.1, 256, 8192) == pytest.approx(3.2, rel=1e-12)


def test_smaller_batch_scales_down():
  assert scale_learning_rate(1e-3, 1024, 256, "sqrt") == pytest.approx(5e-4, rel=1e-12)


def test_bad_rule_is_rejected():
  with pytest.raises(ValueError, match="rule='square'"):
    scale_learning_rate(0.1, 256, 512, "square")


@pytest.mark.parametrize("base_batch, batch, name",
                         [(0, 512, "base_batch=0"), (256, -8, "batch=-8")])
def test_non_positive_batch_is_rejected(base_batch, batch, name):
  with pytest.raises(ValueError, match=name):
    scale_learning_rate(0.1, base_batch, batch)


def test_max_lr_caps_the_rule():
  """Past the noise-dominated regime the full-data curvature bounds the step."""
  assert scale_learning_rate(0.1, 256, 8192, "linear", max_lr=1.0) == 1.0
  assert scale_learning_rate(0.1, 256, 512, "linear", max_lr=1.0) == pytest.approx(0.2)


def _diverges(lr, sharpness, momentum, ema, steps=3000):
  """Gradient descent with momentum on f(x) = sharpness x^2 / 2, written out."""
  x, m = 1.0, 0.0
  for _ in range(steps):
    g = sharpness * x
    m = momentum * m + ((1 - momentum) * g if ema else g)
    x -= lr * m
  return abs(x) > 1.0


@pytest.mark.parametrize("momentum, ema", [(0.0, False), (0.9, False), (0.9, True),
                                           (0.5, True)])
def test_max_learning_rate_is_the_stability_edge_of_a_quadratic(momentum, ema):
  sharpness = 4.0
  edge = max_learning_rate(sharpness, momentum, ema)
  assert not _diverges(0.99 * edge, sharpness, momentum, ema)
  assert _diverges(1.01 * edge, sharpness, momentum, ema)


def test_max_learning_rate_plain_sgd_is_two_over_lambda():
  assert max_learning_rate(8.0) == 0.25


@pytest.mark.parametrize("sharpness, momentum, match", [(0.0, 0.0, "sharpness=0.0"),
                                                        (1.0, 1.0, "momentum=1.0")])
def test_max_learning_rate_rejects_bad_input(sharpness, momentum, match):
  with pytest.raises(ValueError, match=match):
    max_learning_rate(sharpness, momentum)


@pytest.mark.parametrize("rule", ["linear", "sqrt", "none"])
def test_curvature_transfer_is_the_batch_rule_where_curvature_goes_as_one_over_b(rule):
  """lambda_max(H_B) = c / B (noise-dominated): keeping the margin is the batch-size rule."""
  c = 50.0
  got = transfer_by_curvature(0.1, c / 256, c / 8192, rule)
  assert got == pytest.approx(scale_learning_rate(0.1, 256, 8192, rule), rel=1e-12)


def test_curvature_transfer_saturates_with_the_curvature():
  """lambda_max(H_B) = a + c / B: at B >> c/a it stops changing, so does the learning rate."""
  sharpness = lambda b: 2.0 + 50.0 / b
  big = transfer_by_curvature(0.1, sharpness(256), sharpness(1 << 20))
  bigger = transfer_by_curvature(0.1, sharpness(256), sharpness(1 << 22))
  assert bigger / big == pytest.approx(1.0, abs=1e-4)
  assert big == pytest.approx(0.1 * sharpness(256) / 2.0, rel=1e-4)
