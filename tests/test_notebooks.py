"""The notebooks in notebooks/ run top to bottom in a fresh Jupyter kernel (nbclient), within
a wall-clock limit; they are committed without outputs."""
import os
import pathlib

import nbformat
import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # Seconds for one cell; the whole notebook is bounded by pytest-timeout.


def test_there_are_notebooks():
  assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "lasp_8_devices.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_is_committed_without_outputs(path):
  notebook = nbformat.read(path, as_version=4)
  nbformat.validate(notebook)
  for cell in notebook.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_top_to_bottom(path, data_dir, tmp_path):
  import nbclient
  notebook = nbformat.read(path, as_version=4)
  # A fresh kernel of this Python, as a Colab runtime would be: not the test session's 8
  # simulated devices (a notebook sets its own), the session's prepared data sets.
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["TFDS_DATA_DIR"] = data_dir
  env["MPLBACKEND"] = "Agg"
  client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute(env=env)  # Raises CellExecutionError, with the cell and traceback, on failure.
  errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]
  assert not errors
