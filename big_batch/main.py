"""Command-line entry point: `python -m big_batch.main --config configs/X.py[:arg] --workdir DIR`.

Any field can be overridden: `--config.optimizer.learning_rate=0.01`; an override of a field
that does not exist is an error (the config is locked).
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])

# Exit status after a SIGTERM-triggered checkpoint (128 + SIGTERM), so a scheduler restarts.
PREEMPTED_EXIT_CODE = 143


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  from big_batch import train  # Imported after flag parsing, so JAX sees its flags first.

  summary = train.run(flags.FLAGS.config, flags.FLAGS.workdir)
  print(f"Results in {flags.FLAGS.workdir}: summary.json, metrics.jsonl, curves.png, "
        "tensorboard/, checkpoints/", flush=True)
  if summary["preempted"]:
    sys.exit(PREEMPTED_EXIT_CODE)
  print(f"final eval accuracy {summary['eval_accuracy']:.4f}, eval loss "
        f"{summary['eval_loss']:.4f} after {summary['final_step']} steps "
        f"({summary['wall_time_seconds']:.1f} s)", flush=True)


if __name__ == "__main__":
  app.run(main)
