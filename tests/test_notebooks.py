"""The notebooks in notebooks/: stored without outputs, in step with their .py sources, and they
run to the end (their own assert cells check the numbers they compute)."""

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end: not in the fast subset (pytest -m "not slow")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

nbformat = pytest.importorskip("nbformat")


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", _builder().SOURCES)
def test_stored_notebook_matches_its_source_and_has_no_outputs(name):
    stored = nbformat.read(str((NOTEBOOKS / name).with_suffix(".ipynb")), as_version=4)
    built = _builder().build(NOTEBOOKS / name)
    assert [(c.cell_type, c.source) for c in stored.cells] == [(c.cell_type, c.source) for c in built.cells], \
        "notebook out of date: run python notebooks/build_notebooks.py"
    for cell in stored.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_fitting_statistics_notebook_runs_and_its_checks_pass():
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(str(NOTEBOOKS / "fitting_statistics.ipynb"), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO)}})
    client.execute()  # raises CellExecutionError on any error, failed asserts included
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.outputs if out.get("output_type") == "stream")
    assert "recovered epsilon 0.010400 eV" in text
    assert "best alpha:" in text
    cpu = float(re.search(r"\(([\d.]+) s of CPU\)", text).group(1))
    assert cpu < 120, f"notebook took {cpu} s of CPU (CI budget: 2 minutes)"


def test_building_a_dataset_notebook_runs():
    """Structure → converged oracle → built set → grouped k-fold CV error by config_type."""
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(str(NOTEBOOKS / "building_a_dataset.ipynb"), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO)}})
    client.execute()
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.outputs if out.get("output_type") == "stream")
    assert "frames in" in text and "config_type" in text
    assert re.search(r"^all\s+[\d.]+", text, re.M)
