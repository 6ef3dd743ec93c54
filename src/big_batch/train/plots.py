"""The PNG of a run's curves, drawn from its metrics.jsonl: train and every evaluator."""
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
from etils import epath  # noqa: E402

from big_batch.train.metrics import read_jsonl  # noqa: E402


def plot_curves(metrics_path, out_path, keys=("loss", "accuracy")) -> bool:
  """One panel per key (and one of the batch size if it changed), every prefix that has it
  (train, and each evaluator) against the step. False, and nothing written, without records."""
  records = read_jsonl(metrics_path)
  if not records:
    return False
  names = {k for r in records for k in r if k != "step"}
  keys = [k for k in keys if any(n.endswith(f"/{k}") for n in names)]
  sizes = {r["train/batch_size"] for r in records if "train/batch_size" in r}
  panels = keys + (["batch_size"] if len(sizes) > 1 else [])
  if not panels:
    return False
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
  for ax, key in zip(axes[0], panels):
    prefixes = sorted({n[:-len(key) - 1] for n in names if n.endswith(f"/{key}")},
                      key=lambda p: (p != "train", p))
    for prefix in prefixes:
      points = [(r["step"], r[f"{prefix}/{key}"]) for r in records if f"{prefix}/{key}" in r]
      steps, values = zip(*points)
      ax.plot(steps, values, marker=None if prefix == "train" else "o", label=prefix)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.legend()
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  epath.Path(out_path).write_bytes(buffer.getvalue())
  return True
