"""The canonical trainer: `run(config, workdir)`."""
from big_batch.train.loop import run
from big_batch.train.validate import validate

__all__ = ["run", "validate"]
