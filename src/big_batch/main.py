"""Command-line entry point: `python -m big_batch.main --config configs/X.py[:arg] --workdir DIR`.

Any field can be overridden: `--config.optimizer.learning_rate=0.01`; an override of a field
that does not exist is an error (the config is locked). DIR may be local or `gs://...`.
Rerunning into a workdir resumes it; `--allow_config_change` lets it continue with a changed
config (train/workdir.py). A bad config prints one line naming the field and exits with 2.

Several processes (docs/multihost.md): on Cloud TPU pods, Slurm and Open MPI add
`--distributed` to the same command on every host; elsewhere give every process
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (`big_batch.launch` does
this for local processes).
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

CONFIG_ERROR_EXIT_CODE = 2
# Exit status after a SIGTERM-triggered checkpoint (128 + SIGTERM), so a scheduler restarts.
PREEMPTED_EXIT_CODE = 143


def _config_path(argv) -> str | None:
  """The file part of --config (before ':arg'), from the raw command line."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      value = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    return value.split(":", 1)[0]
  return None


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(CONFIG_ERROR_EXIT_CODE)


def _check_config_file(argv) -> None:
  """A missing --config file is named at once (absl would report it late and as
  'config_config')."""
  path = _config_path(argv)
  if path is not None and not os.path.isfile(path):
    _fail(f"--config={path}: no such file (run from the directory the path is relative to, "
          "e.g. the repository root for configs/...)")


def _one_line(error: BaseException) -> str:
  """An exception's message on one line; of an embedded traceback, only its last line."""
  lines = [line.strip() for line in str(error).replace("\\n", "\n").splitlines()
           if line.strip()]
  if any(line.startswith("Traceback") for line in lines):
    lines = lines[-1:]
  text = " ".join(lines)
  if isinstance(error, (KeyError, AttributeError)) and text[:1] == text[-1:] == "'":
    text = text[1:-1].replace("\\'", "'")
  return text


def _parse_flags(argv):
  """absl flag parsing, with config-file errors (bad ':arg', misspelt override) as one line."""
  _check_config_file(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    _fail(_one_line(error))
  except (AttributeError, KeyError, TypeError, ValueError) as error:
    overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
    _fail(f"a --config override does not fit the config ({', '.join(overrides)}): "
          f"{_one_line(error)}")


config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory (or gs:// path) for checkpoints, metrics and "
                    "results.")
flags.mark_flags_as_required(["config", "workdir"])
flags.DEFINE_bool("allow_config_change", False, "Resume a workdir whose checkpoint was trained "
                  "with a different config, continuing with the new values.")
flags.DEFINE_bool("distributed", False, "Join a multi-process run whose coordinator, size and "
                  "process id JAX discovers itself (Cloud TPU, Slurm, Open MPI).")
flags.DEFINE_string("coordinator_address", None,
                    "HOST:PORT of process 0's coordinator, for a multi-process run.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1.")
flags.DEFINE_integer("initialization_timeout", 300,
                     "Seconds to wait for the coordinator and all processes to join.")


def format_summary(summary: dict) -> list[str]:
  """The lines main prints of a summary: each evaluator's final metrics, then the totals."""
  lines = []
  for name, metrics in summary.get("evals", {}).items():
    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "/" not in k)
    lines.append(f"final {name}: {shown}")
  lines.append(f"{summary['final_step']} steps, {summary['examples_seen']:,} examples "
               f"({summary['wall_time_seconds']:.1f} s)")
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  # Imported after flag parsing, so JAX sees its flags first; the processes of a multi-process
  # run join before anything touches the backend.
  import jax
  from big_batch.checks import ConfigError
  from big_batch.parallel import distributed

  FLAGS = flags.FLAGS
  joined = distributed.initialize(
      auto=FLAGS.distributed, coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
      timeout_seconds=FLAGS.initialization_timeout)
  with distributed.exit_promptly_on_error():
    if joined:
      distributed.check_devices(FLAGS.config.mesh)
    from big_batch import train

    try:
      summary = train.run(FLAGS.config, FLAGS.workdir,
                          allow_config_change=FLAGS.allow_config_change)
    except ConfigError as error:
      if jax.process_count() > 1:
        raise
      _fail(str(error))
  lead = jax.process_index() == 0  # Prints once, however many processes.
  if lead:
    print(f"Results in {FLAGS.workdir}: summary.json, metrics.jsonl, curves.png, "
          "tensorboard/, checkpoints/", flush=True)
  if summary["preempted"]:
    sys.exit(PREEMPTED_EXIT_CODE)
  if lead:
    print("\n".join(format_summary(summary)), flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
