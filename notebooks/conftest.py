"""The test suite runs the notebooks (nbmake) in their fast mode (small subsets, tens of seconds each),
in kernels that fail a cell whose figure has an empty plot (checked_figures.py)."""

import os
import tempfile

import checked_figures
import pytest

os.environ.setdefault("MNIST_LAB_FAST", "1")

_SAVED = pytest.StashKey[dict]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a notebook runs: its kernel gets a startup file that installs the figure check."""
    if item.path.suffix != ".ipynb":
        return
    item.stash[_SAVED] = {key: os.environ.get(key) for key in ("IPYTHONDIR", "PYTHONPATH")}
    os.environ.update(checked_figures.kernel_env(tempfile.mkdtemp(prefix="ipython-checked-")))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    for key, value in item.stash.get(_SAVED, {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
