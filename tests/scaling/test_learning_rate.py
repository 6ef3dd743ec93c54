"""Batch-size rules of big_batch.scaling.learning_rate."""
import pytest

from big_batch.scaling.learning_rate import scale_learning_rate


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
