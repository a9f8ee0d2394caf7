"""The notebooks' own checks: empty plots fail a cell, and the committed notebooks stay small and quiet.

nbmake executes the notebooks themselves (notebooks/conftest.py); these tests prove that the figure check
it runs them with fails on an empty plot, and read the committed .ipynb files without executing them.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
_spec = importlib.util.spec_from_file_location("checked_figures", NOTEBOOKS / "checked_figures.py")
checked_figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checked_figures)


@pytest.fixture
def figure():
    fig, ax = plt.subplots()
    yield fig, ax
    plt.close(fig)


@pytest.mark.parametrize(
    ("draw", "empty"),
    [
        (lambda ax: None, True),
        (lambda ax: ax.legend(handles=[]), True),
        (lambda ax: ax.plot([], []), True),
        (lambda ax: ax.plot([float("nan")] * 3), True),
        (lambda ax: ax.scatter([], []), True),
        (lambda ax: ax.bar([0, 1], [0, 0]), True),
        (lambda ax: ax.plot([1, 2, 3]), False),
        (lambda ax: ax.plot([0.5], [0.9], "o"), False),
        (lambda ax: ax.scatter([0, 1], [1, 0]), False),
        (lambda ax: ax.imshow([[0, 1], [1, 0]]), False),
        (lambda ax: ax.bar([0, 1], [0.2, 0.8]), False),
        (lambda ax: ax.barh([0], [0.5]), False),
        (lambda ax: ax.fill_between([0, 1], [0, 1]), False),
    ],
)
def test_an_axes_without_drawn_data_is_reported(figure, draw, empty):
    fig, ax = figure
    ax.set_title("learning curve")
    draw(ax)
    assert bool(checked_figures.problems(fig)) is empty


def test_one_empty_panel_of_many_is_reported_and_hidden_ones_are_not(figure):
    fig, ax = figure
    ax.plot([1, 2])
    second = fig.add_subplot(2, 2, 4)
    second.set_title("seed 1")
    assert checked_figures.problems(fig) == [
        f"figure {fig.number}: Axes 1 'seed 1' has no drawn data (no line, point, image or bar)"
    ]
    second.set_visible(False)
    assert checked_figures.problems(fig) == []


def _execute(cells: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run the cells in a kernel set up as the test suite sets up the notebooks' kernels."""
    for key, value in checked_figures.kernel_env(tmp_path / "ipython").items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    return client.execute()


def test_a_notebook_cell_with_an_empty_plot_fails(tmp_path, monkeypatch):
    """The negative test: what the learning curve of 03_experiments did when its glob found no runs."""
    cells = [
        "import matplotlib.pyplot as plt",
        "fig, ax = plt.subplots()\nfor run in []:\n    ax.plot(run)\nax.set_title('val/acc')\nax.legend()",
    ]
    with pytest.raises(CellExecutionError, match=r"EmptyFigureError.*'val/acc' has no drawn data"):
        _execute(cells, tmp_path, monkeypatch)


def test_a_notebook_cell_with_drawn_data_passes_and_keeps_its_output(tmp_path, monkeypatch):
    cells = ["import matplotlib.pyplot as plt", "fig, ax = plt.subplots()\nax.plot([1, 3, 2])\n6 * 7"]
    executed = _execute(cells, tmp_path, monkeypatch)
    outputs = executed.cells[1].outputs
    assert any(o.get("data", {}).get("text/plain") == "42" for o in outputs)  # the cell's value is displayed
    assert any("image/png" in o.get("data", {}) for o in outputs)  # and its figure shown


COMMITTED = sorted(NOTEBOOKS.glob("*.ipynb"))
NOISE = re.compile(r"litlogger|💡|Tip:|Warning|warn\(|it/s\]|\r")
PERCENT = re.compile(r"\d\s?%")


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_notebook_is_small_and_quiet(path):
    """Saved outputs: no progress bars, library adverts or warnings, and under 2 MB with their pictures."""
    assert path.stat().st_size < 2_000_000
    notebook = json.loads(path.read_text())
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"cell {index} of {path.name} failed when it was saved"
            text = "".join(output.get("text", []))
            assert not NOISE.search(text), f"cell {index} of {path.name} saved noise: {text[:200]!r}"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_markdown_quotes_no_accuracy_that_a_cell_computes(path):
    """Percentages come from the cells' outputs, not from prose that a re-run can contradict."""
    notebook = json.loads(path.read_text())
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            assert not PERCENT.search(text), f"markdown cell {index} of {path.name} hard-codes {text!r}"
