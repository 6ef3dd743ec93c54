"""The PNG of a run's train and eval curves, drawn from its metrics.jsonl."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

from big_batch.train.metrics import read_jsonl  # noqa: E402


def plot_curves(metrics_path: str, out_path: str, keys=("loss", "accuracy")) -> None:
  """One panel per key, train and eval curves against the step."""
  records = read_jsonl(metrics_path)
  fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5))
  for ax, key in zip(axes, keys):
    for prefix in ("train", "eval"):
      points = [(r["step"], r[f"{prefix}/{key}"]) for r in records if f"{prefix}/{key}" in r]
      if points:
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if prefix == "eval" else None, label=prefix)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.legend()
  fig.tight_layout()
  fig.savefig(out_path, dpi=100)
  plt.close(fig)
