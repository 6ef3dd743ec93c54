"""Command-line entry point: `python -m big_batch.main --config configs/X.py[:arg] --workdir DIR`.

Any field can be overridden: `--config.optimizer.learning_rate=0.01`; an override of a field
that does not exist is an error (the config is locked).

Several processes (docs/multihost.md): on Cloud TPU pods, Slurm and Open MPI add
`--distributed` to the same command on every host; elsewhere give every process
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (`big_batch.launch` does
this for local processes).
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])
flags.DEFINE_bool("distributed", False, "Join a multi-process run whose coordinator, size and "
                  "process id JAX discovers itself (Cloud TPU, Slurm, Open MPI).")
flags.DEFINE_string("coordinator_address", None,
                    "HOST:PORT of process 0's coordinator, for a multi-process run.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1.")
flags.DEFINE_integer("initialization_timeout", 300,
                     "Seconds to wait for the coordinator and all processes to join.")

# Exit status after a SIGTERM-triggered checkpoint (128 + SIGTERM), so a scheduler restarts.
PREEMPTED_EXIT_CODE = 143


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  # Imported after flag parsing, so JAX sees its flags first; the processes of a multi-process
  # run join before anything touches the backend.
  import jax
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

    summary = train.run(FLAGS.config, FLAGS.workdir)
  lead = jax.process_index() == 0  # Prints once, however many processes.
  if lead:
    print(f"Results in {FLAGS.workdir}: summary.json, metrics.jsonl, curves.png, "
          "tensorboard/, checkpoints/", flush=True)
  if summary["preempted"]:
    sys.exit(PREEMPTED_EXIT_CODE)
  if lead:
    print(f"final eval accuracy {summary['eval_accuracy']:.4f}, eval loss "
          f"{summary['eval_loss']:.4f} after {summary['final_step']} steps "
          f"({summary['wall_time_seconds']:.1f} s)", flush=True)


if __name__ == "__main__":
  app.run(main)
