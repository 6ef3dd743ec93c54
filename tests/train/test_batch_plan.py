"""The batch plan: budgets in steps or examples, scheduled sizes, and the grid of task sizes."""
import ml_collections
import pytest

from big_batch import checks
from big_batch.train.batch_plan import BatchPlan, Segment, check


def plan(n=1000, shards=1, **fields):
  budget = {k: fields.pop(k) for k in ("num_steps", "num_epochs", "num_examples") if k in fields}
  config = ml_collections.ConfigDict({"batch": {"size": 64, **fields}, **budget})
  return BatchPlan(config, n, shards)


def test_an_examples_budget_ends_before_the_batch_that_would_pass_it():
  p = plan(num_examples=1000)  # 15 batches of 64 = 960; a 16th would reach 1024.
  assert p.total_steps() == 15 and p.total_examples() == 1000
  assert not p.done(14, 14 * 64, 64) and p.done(15, 960, 64)
  assert plan(num_epochs=2.0).total_steps() == 31  # floor(2000 / 64)
  steps = plan(num_steps=7)
  assert steps.total_steps() == 7 and steps.total_examples() == 7 * 64 and steps.done(7, 0, 64)


def test_a_schedule_switches_size_at_the_first_step_past_its_threshold():
  p = plan(num_examples=10_000, schedule=((2000, 256), (5000, 512)))
  # 64-row steps until 2000 examples are seen: 32 steps reach 2048; then 256-row steps from
  # 2048 until 5000 is passed: 12 steps reach 5120; then 512.
  assert p.segments() == [Segment(0, 0, 64), Segment(32, 2048, 256), Segment(44, 5120, 512)]
  assert [p.scheduled_size(e) for e in (0, 1999, 2000, 4999, 5120)] == [64, 64, 256, 256, 512]
  assert p.position_at(32) == 2048 and p.position_at(45) == 5120 + 512
  # 44 steps reach 5120; 9 steps of 512 reach 9728 and a 10th would pass 10,000.
  assert p.total_steps() == 44 + 9
  assert plan(schedule=((0, 64), (100, 128)), num_steps=5).segments()[0] == Segment(0, 0, 64)


@pytest.mark.parametrize("fields, asked, expected", [
    (dict(grid=32), 1, 32), (dict(grid=32), 33, 64), (dict(grid=32), 64, 64),
    (dict(grid=16, grid_geometric=True), 17, 32), (dict(grid=16, grid_geometric=True), 100, 128),
    (dict(grid=8, max_micro_batch=12), 100, 192),  # 8 shards: 13 rows each -> 2 x 12 per device.
    (dict(grid=32), 5000, 992),                    # At most the largest grid size in 1000 rows.
    (dict(grid=16, grid_geometric=True), 5000, 512),
])
def test_task_sizes_are_rounded_up_to_the_grid_and_capped_by_the_data(fields, asked, expected):
  shards = 8 if "max_micro_batch" in fields else 1
  p = plan(num_steps=1, shards=shards, **fields)
  assert p.round(asked) == expected
  assert p.round(expected) == expected  # Grid sizes are fixed points.


def test_a_batch_larger_than_the_training_split_is_an_error():
  with pytest.raises(ValueError, match="a batch of 2048 rows exceeds the 1000 training examples"):
    plan(num_steps=1, schedule=((100, 2048),))


@pytest.mark.parametrize("fields, message", [
    (dict(grid=12), r"config.batch.grid=12 must be a multiple of the 8 devices"),
    (dict(max_micro_batch=4, accumulation_steps=2), r"config.batch.max_micro_batch=4 sets the "
                                                    r"micro-batches itself"),
    (dict(schedule=((100, 64), (50, 128))), r"must list increasing examples-seen thresholds"),
    (dict(schedule=((100,),)), r"must be \(examples seen, batch size\) integer pairs"),
    (dict(pool_size=0), r"config.batch.pool_size=0 must be a positive integer"),
])
def test_check_names_the_bad_batch_field(fields, message):
  config = ml_collections.ConfigDict({"batch": {"size": 64, **fields}, "num_steps": 10})
  checker = checks.Checker(config)
  with pytest.raises(ValueError, match=message):
    check(checker.section("batch"), checker.section(), shards=8)
