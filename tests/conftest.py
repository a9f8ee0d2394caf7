import os
import struct
import subprocess
import sys
from pathlib import Path

# pytest-xdist runs one test process per core (`-n auto` in pyproject.toml): each, and the runs it starts,
# gets one torch thread, so that no two multi-threaded torch processes fight over a core (on 2 cores that
# makes each many times slower). Set before torch is imported.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from mnist_lab.train import train

REPO = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as LeCun defined it: magic (0, 0, 0x08 = ubyte, ndim), then big-endian dims."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_idx_dataset(root: Path, folder: str = "MNIST", n_train: int = 120, n_test: int = 40) -> Path:
    """Tiny, learnable IDX files in torchvision's layout: the label is a bright bar at row 2*label+4."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label + 4, 4:24] = 255
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    make_idx_dataset(tmp_path / "data", folder="FashionMNIST")
    return make_idx_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The real datasets: MNIST_LAB_DATA_DIR (set by the Makefile and .ci/run) or ./data."""
    root = Path(os.environ.get("MNIST_LAB_DATA_DIR", REPO / "data"))
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.fail(f"real MNIST not found under {root}: run `make data` or set MNIST_LAB_DATA_DIR")
    return root


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_module("mnist_lab.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def cli_env(tmp_path: Path, real_data_root: Path) -> dict[str, str]:
    """A command's environment in the tests: the real data, outputs under tmp_path/out, and the repository
    on PYTHONPATH, so that overrides can add the test suite's callbacks (tests.probe)."""
    return {
        **os.environ,
        "MNIST_LAB_DATA_DIR": str(real_data_root),
        "MNIST_LAB_OUTPUT_DIR": str(tmp_path / "out"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def run_cli(
    tmp_path: Path, real_data_root: Path, *overrides: str, tool: str = "mnist_lab"
) -> subprocess.CompletedProcess:
    """`python -m TOOL OVERRIDES` in tmp_path (cli_env)."""
    return subprocess.run(
        [sys.executable, "-m", tool, *overrides],
        cwd=tmp_path,
        env=cli_env(tmp_path, real_data_root),
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="session")
def trained_checkpoint(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained CNN: the speedrun (one epoch) with shifted training images."""
    out = tmp_path_factory.mktemp("model")
    cfg = compose_config(
        "experiment=speedrun",
        "augment=shift",
        f"data.root={real_data_root}",
        "logger=none",
        f"paths.output_dir={out}",
    )
    assert train(cfg)["test/acc"] > 0.98
    return out / "checkpoints" / "best.ckpt"
