"""Momentum and learning rate for a new batch size at a fixed time constant in samples.

Kosson et al. 2021 (Pipelined Backpropagation at Scale, arXiv 2003.11666; parallelism.md
§10.5) carry a recipe tuned at batch B to batch b (down to 1) by keeping

  the momentum's decay per sample:   m_b = m_B^(b/B)          (so m_b^(B/b) = m_B), and
  each sample's total contribution:  lr_b / ((1 - m_b) b) = lr_B / ((1 - m_B) B),

the second because a gradient (a mean over the batch) moves momentum SGD by lr/(1 - m) in
total. [unverified against the PDF: the rules as parallelism.md states them.]
"""
import math


def _positive(name: str, value) -> None:
  if value <= 0:
    raise ValueError(f"{name}={value!r} must be positive")


def scale_momentum(momentum: float, base_batch: int, batch: int) -> float:
  """m_b = m_B^(b/B): the same momentum decay per sample (Kosson et al. 2021, scaling rule)."""
  _positive("base_batch", base_batch)
  _positive("batch", batch)
  if not 0.0 <= momentum < 1.0:
    raise ValueError(f"momentum={momentum!r} must be in [0, 1)")
  return momentum ** (batch / base_batch)


def scale_learning_rate_for_momentum(learning_rate: float, momentum: float, base_batch: int,
                                     batch: int) -> float:
  """lr_b = lr_B (1 - m_b) b / ((1 - m_B) B), m_b = scale_momentum(m_B, B, b).

  Keeps lr / ((1 - m) batch), each sample's total step, fixed (Kosson et al. 2021, scaling
  rule). With m_B = 0 it is the linear rule lr_B b / B.
  """
  scaled = scale_momentum(momentum, base_batch, batch)
  return learning_rate * (1.0 - scaled) * batch / ((1.0 - momentum) * base_batch)


def momentum_time_constant(momentum: float, batch: int) -> float:
  """-b / ln(m): the samples over which momentum's impulse response decays by e.

  m^k after k steps of b samples is exp(-samples / tau); `scale_momentum` keeps tau fixed.
  For m near 1 it is close to b / (1 - m).
  """
  _positive("batch", batch)
  if not 0.0 < momentum < 1.0:
    raise ValueError(f"momentum={momentum!r} must be in (0, 1)")
  return -batch / math.log(momentum)
