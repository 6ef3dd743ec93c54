"""Which examples to train on: weighted coresets (facility_location) and the CREST loop (crest).

The task that trains on them is `tasks/crest.py`, registered as 'crest'.
"""
from big_batch.selection import crest, facility_location

__all__ = ["crest", "facility_location"]
