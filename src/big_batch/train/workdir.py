"""A run's workdir (local or gs://): checks that it is usable, and keeps the record of its configs.

Rerunning into a workdir resumes it. Before anything is overwritten, the new config is
compared with the one the workdir holds (`config.json`):
- fields in `RESUME_SAFE` (the budget, to extend a run; log, checkpoint and evaluation
  cadences; where the data lives) may change freely;
- any other difference, when a checkpoint would be resumed, is an error naming the fields,
  unless the run is started with `allow_config_change` (`--allow_config_change`); a
  checkpoint whose arrays differ from the new state is an error whatever the flag
  (train/checkpoint.py);
- every run's config is kept, numbered, in `config_history/`, with what changed; `config.json`
  is the latest.
"""
import datetime
import json

import jax
from etils import epath

from big_batch.checks import ConfigError

# Dotted config paths (a trailing '.*' covers a whole section) that a resumed run may change.
RESUME_SAFE = ("num_steps", "num_epochs", "num_examples", "log_every", "checkpoint_every",
               "keep_checkpoints", "evals.*", "data.data_dir", "data.prefetch",
               "data.in_memory", "init_from.*")


def prepare(workdir: str) -> epath.Path:
  """The workdir as an epath, created if needed; errors if it is a file or not writable."""
  path = epath.Path(workdir)
  if path.exists() and not path.is_dir():
    raise ConfigError(f"--workdir={workdir!r} is a file, not a directory")
  # One probe per process: the processes of a run share the workdir.
  probe = path / f".big_batch_write_test_{jax.process_index()}"
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe.write_text("")
    probe.unlink()
  except OSError as error:
    raise ConfigError(f"--workdir={workdir!r} is not writable ({type(error).__name__}: "
                      f"{error})") from None
  return path


def flatten(record: dict, prefix: str = "") -> dict:
  """A nested config record -> {dotted path: value}."""
  out = {}
  for key, value in record.items():
    path = f"{prefix}{key}"
    if isinstance(value, dict) and value:
      out.update(flatten(value, path + "."))
    else:
      out[path] = value
  return out


def config_record(config) -> dict:
  return json.loads(config.to_json_best_effort())


def differences(old: dict, new: dict) -> dict:
  """{dotted path: (old value, new value)} of two config records (None: absent)."""
  old, new = flatten(old), flatten(new)
  return {path: (old.get(path), new.get(path)) for path in sorted(old.keys() | new.keys())
          if old.get(path) != new.get(path)}


def is_resume_safe(path: str) -> bool:
  return any(path == safe or (safe.endswith(".*") and path.startswith(safe[:-1]))
             for safe in RESUME_SAFE)


def previous_config(workdir: epath.Path) -> dict | None:
  path = workdir / "config.json"
  return json.loads(path.read_text()) if path.exists() else None


def describe(changes: dict) -> str:
  return "; ".join(f"config.{path}: {old!r} -> {new!r}" for path, (old, new) in changes.items())


def check_resume(changes: dict, allow_config_change: bool, step: int) -> None:
  """Errors if a run resumed at `step` would continue with changed, unsafe fields."""
  unsafe = {p: c for p, c in changes.items() if not is_resume_safe(p)}
  if unsafe and not allow_config_change:
    raise ConfigError(
        f"this workdir's checkpoint (step {step}) was trained with another config: "
        f"{describe(unsafe)}. Use a new --workdir, or pass --allow_config_change to continue "
        "this run with the new values (recorded in config_history/).")


def record(workdir: epath.Path, config, start_step: int, changes: dict) -> None:
  """Writes `config.json` and the next numbered entry of `config_history/`."""
  history = workdir / "config_history"
  history.mkdir(parents=True, exist_ok=True)
  # On cloud storage a directory exists only once it holds an object.
  number = len(list(history.glob("*.json"))) if history.exists() else 0
  entry = {"run": number, "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "start_step": start_step,
           "changed": {path: {"old": old, "new": new} for path, (old, new) in changes.items()},
           "config": config_record(config)}
  (history / f"{number:04d}.json").write_text(json.dumps(entry, indent=2))
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
