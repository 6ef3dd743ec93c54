"""Regime adaptation: epoch counts times ceil(B / B0), so the number of updates is kept."""
import pytest

from big_batch.scaling.regime import adaptation_factor, regime_adaptation

SCHEDULE = {"epochs": 90, "boundaries": [30, 60], "values": [0.1, 0.01, 0.001],
            "warmup_epochs": 5, "momentum": 0.9}


@pytest.mark.parametrize("base_batch, batch, factor",
                         [(128, 4096, 32), (128, 200, 2), (128, 128, 1), (128, 64, 1)])
def test_epoch_counts_are_multiplied_by_ceil_ratio(base_batch, batch, factor):
  original = {key: list(v) if isinstance(v, list) else v for key, v in SCHEDULE.items()}
  adapted = regime_adaptation(SCHEDULE, base_batch, batch)
  assert adaptation_factor(base_batch, batch) == factor
  assert adapted == {"epochs": 90 * factor, "boundaries": [30 * factor, 60 * factor],
                     "values": [0.1, 0.01, 0.001], "warmup_epochs": 5 * factor, "momentum": 0.9}
  assert SCHEDULE == original  # the input is left untouched


def test_identity_at_the_base_batch():
  assert regime_adaptation(SCHEDULE, 256, 256) == SCHEDULE


def test_tuple_boundaries_stay_tuples():
  adapted = regime_adaptation({"epochs": 10, "boundaries": (2.5, 5)}, 128, 512)
  assert adapted == {"epochs": 40, "boundaries": (10.0, 20)}


def test_number_of_updates_matches_the_small_batch_run():
  examples = 12 * 4096

  def updates(schedule, batch):
    per_epoch = examples // batch
    return schedule["epochs"] * per_epoch, [b * per_epoch for b in schedule["boundaries"]]

  small = updates(SCHEDULE, 128)
  assert updates(regime_adaptation(SCHEDULE, 128, 4096), 4096) == small
  assert updates(SCHEDULE, 4096) != small
  # Not a multiple of B0: ceil rounds up, so at least as many updates as the small batch.
  total, boundaries = updates(regime_adaptation(SCHEDULE, 128, 200), 200)
  assert total >= small[0] and all(b >= s for b, s in zip(boundaries, small[1]))


@pytest.mark.parametrize("base_batch, batch, name",
                         [(0, 128, "base_batch=0"), (128, -4, "batch=-4"),
                          (128.0, 256, "base_batch=128.0"), (128, True, "batch=True")])
def test_non_positive_or_non_integer_batches_are_rejected(base_batch, batch, name):
  with pytest.raises(ValueError, match=name):
    regime_adaptation(SCHEDULE, base_batch, batch)


def test_schedule_without_epochs_is_rejected():
  with pytest.raises(ValueError, match="'epochs'.*boundaries"):
    regime_adaptation({"boundaries": [30, 60]}, 128, 256)
