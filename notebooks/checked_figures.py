"""Tests only: a notebook cell fails when a figure it leaves open has an Axes with nothing drawn on it.

An empty plot raises nothing in matplotlib, so a notebook whose learning curve found no runs used to pass
its test. Under the test suite (notebooks/conftest.py, tests/test_notebooks.py) every kernel starts with
an IPython startup file that calls `install()`: an AST transformer then ends every cell with
`check_open_figures()`, which raises `EmptyFigureError` inside the cell (so nbclient and nbmake report the
cell as failed) when an open figure has no Axes, or a visible Axes without drawn data: no line with a
finite point, no scatter point, no image, no bar of non-zero size. The cell's displayed value is kept, and
the inline backend still shows the figures after the cell.

To run a notebook checked outside pytest:

    env $(python notebooks/checked_figures.py /tmp/ipython-checked) jupyter nbconvert --execute ...
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STARTUP = "import checked_figures\n\nchecked_figures.install()\n"
_VALUE = "_checked_figures_value"


class EmptyFigureError(AssertionError):
    """A figure shows an Axes without data: the plot found nothing to draw."""


def _finite_rows(values: object) -> bool:
    import numpy as np

    array = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)
    if array.size == 0:
        return False
    return bool(np.isfinite(array.reshape(len(array), -1)).all(axis=1).any())


def has_data(ax: object) -> bool:
    """Whether the Axes draws a line with a finite point, a scatter point, an image or a non-empty patch."""
    from matplotlib.collections import PathCollection
    from matplotlib.patches import Rectangle

    if any(_finite_rows(line.get_xydata()) for line in ax.get_lines()):
        return True
    for collection in ax.collections:
        if isinstance(
            collection, PathCollection
        ):  # scatter: its paths are the marker, its offsets the points
            if _finite_rows(collection.get_offsets()):
                return True
        elif any(len(path.vertices) for path in collection.get_paths()):
            return True
    for image in ax.get_images():
        array = image.get_array()
        if array is not None and array.size:
            return True
    for patch in ax.patches:
        if not isinstance(patch, Rectangle):
            return True
        if patch.get_width() and patch.get_height():
            return True
    return False


def problems(figure: object) -> list[str]:
    """One line per empty Axes of the figure (or one if it has no Axes at all)."""
    title = figure.get_suptitle()
    name = f"figure {figure.number}" + (f" ({title!r})" if title else "")
    visible = [ax for ax in figure.axes if ax.get_visible()]
    if not visible:
        return [f"{name} has no Axes"]
    return [
        f"{name}: Axes {i} {ax.get_title()!r} has no drawn data (no line, point, image or bar)"
        for i, ax in enumerate(visible)
        if not has_data(ax)
    ]


def check_open_figures() -> None:
    """Raise EmptyFigureError if any open pyplot figure has an empty Axes (closing those figures)."""
    if "matplotlib.pyplot" not in sys.modules:
        return
    import matplotlib.pyplot as plt

    found = []
    for number in plt.get_fignums():
        figure = plt.figure(number)
        lines = problems(figure)
        if lines:
            found += lines
            plt.close(figure)
    if found:
        raise EmptyFigureError("; ".join(found))


class CheckAtCellEnd(ast.NodeTransformer):
    """Append `check_open_figures()` to every cell, keeping the value of a last expression displayed."""

    def visit_Module(self, node: ast.Module) -> ast.Module:
        check = ast.parse("__import__('checked_figures').check_open_figures()").body
        body = node.body
        if body and isinstance(body[-1], ast.Expr):
            keep = ast.Assign(targets=[ast.Name(_VALUE, ast.Store())], value=body[-1].value)
            node.body = [*body[:-1], keep, *check, ast.Expr(ast.Name(_VALUE, ast.Load()))]
        else:
            node.body = [*body, *check]
        return ast.fix_missing_locations(node)


def install(shell: object = None) -> None:
    """Check the figures at the end of every cell of this IPython shell (called by the startup file)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is not None and not any(isinstance(t, CheckAtCellEnd) for t in shell.ast_transformers):
        shell.ast_transformers.append(CheckAtCellEnd())


def kernel_env(ipython_dir: str | Path) -> dict[str, str]:
    """Environment variables that make every IPython kernel started with them check its figures."""
    startup = Path(ipython_dir) / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-checked_figures.py").write_text(STARTUP)
    path = os.environ.get("PYTHONPATH")
    return {
        "IPYTHONDIR": str(ipython_dir),
        "PYTHONPATH": os.pathsep.join([str(HERE), *([path] if path else [])]),
    }


if __name__ == "__main__":
    print(" ".join(f"{k}={v}" for k, v in kernel_env(sys.argv[1]).items()))
