"""Bad input ends in one clear error that names the problem and the fix, and loses nothing."""

import gzip
import hashlib
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from torchvision import datasets

from mnist_lab.build import check_config
from mnist_lab.data import MNISTDataModule
from mnist_lab.errors import ConfigError, DataError, TrainingDiverged
from mnist_lab.train import train
from tests.conftest import compose_config, write_idx

RAW = Path("MNIST") / "raw"


def snapshot(root: Path) -> dict[str, str]:
    return {str(p): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def setup_error(root: Path) -> str:
    with pytest.raises(DataError) as err:
        MNISTDataModule(root=str(root), val_size=20).setup()
    return str(err.value)


def test_truncated_file(tiny_root: Path) -> None:
    path = tiny_root / RAW / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    before = snapshot(tiny_root)
    message = setup_error(tiny_root)
    assert str(path) in message and "truncated" in message and "`python -m mnist_lab.datasets`" in message
    assert snapshot(tiny_root) == before, "a failed run must not touch the data directory"


def test_wrong_magic_number(tiny_root: Path) -> None:
    path = tiny_root / RAW / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x1f\x8b\x08\x00" + path.read_bytes()[4:])  # e.g. a gzip file under the IDX name
    message = setup_error(tiny_root)
    assert "not an IDX file" in message and "1f8b0800" in message and path.name in message


def test_image_and_label_counts_disagree(tiny_root: Path) -> None:
    write_idx(tiny_root / RAW / "train-labels-idx1-ubyte", np.zeros(119))
    message = setup_error(tiny_root)
    assert "120 images" in message and "119 labels" in message


def test_wrong_image_dimensions(tiny_root: Path) -> None:
    write_idx(tiny_root / RAW / "t10k-images-idx3-ubyte", np.zeros((40, 32, 32)))
    assert "shape (32, 32), expected (28, 28)" in setup_error(tiny_root)


def test_unreadable_file(tiny_root: Path) -> None:
    path = tiny_root / RAW / "train-images-idx3-ubyte"
    path.unlink()
    path.mkdir()  # root reads any file; a directory in its place cannot be read by anyone
    assert f"cannot read {path}" in setup_error(tiny_root)


def test_download_with_wrong_md5_fails_and_keeps_what_was_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    for filename, _ in datasets.MNIST.resources:
        (served / filename).write_bytes(gzip.compress(b"not the real file"))
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(datasets.MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    root = tmp_path / "data"
    (root / RAW).mkdir(parents=True)
    (root / RAW / "notes.txt").write_text("mine")
    try:
        with pytest.raises(DataError) as err:
            MNISTDataModule(root=str(root)).prepare_data()
    finally:
        server.shutdown()
    assert "could not be downloaded" in str(err.value) and "corrupted" in str(err.value)
    assert (root / RAW / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data.batch_size=0", "data.batch_size=0"),
        ("data.batch_size=-4", "data.batch_size=-4"),
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc'"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0"),
        ("data.val_size=60000", "data.val_size=60000"),
        ("optimizer.lr=-1", "optimizer.lr=-1"),
    ],
)
def test_config_errors_name_the_setting(override: str, named: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        check_config(compose_config(override, f"paths.output_dir={tmp_path}"))


def test_a_new_run_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier"
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "checkpoints" / "last.ckpt").write_text("mine")
    done = subprocess.run(
        [sys.executable, "-m", "mnist_lab", f"hydra.run.dir={earlier}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "already holds a run" in done.stderr
    assert (earlier / "checkpoints" / "last.ckpt").read_text() == "mine"


@pytest.mark.parametrize(
    ("override", "expected"),
    [("model=foo", "Could not find 'model/foo'"), ("trainer.max_epochs=abc", "trainer.max_epochs='abc'")],
)
def test_cli_errors_name_the_setting_without_a_traceback(
    override: str, expected: str, tmp_path: Path
) -> None:
    """Our own checks print one `error:` line; Hydra's refusal of an unknown option is its own text."""
    done = subprocess.run(
        [sys.executable, "-m", "mnist_lab", override, f"hydra.run.dir={tmp_path}/run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert expected in done.stderr and "Traceback" not in done.stderr
    if override.startswith("trainer."):  # ours: exactly one line, and it is the error
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], done.stderr


def test_nan_loss_stops_with_a_clear_message(tiny_root: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        f"data.root={tiny_root}",
        "data.val_size=20",
        "optimizer=sgd",
        "optimizer.lr=1e12",
        "trainer.accelerator=cpu",
        "logger=none",
        f"paths.output_dir={tmp_path}",
    )
    with pytest.raises(TrainingDiverged, match=r"loss reached (nan|inf).*diverged.*Lower optimizer.lr"):
        train(cfg)


def test_same_seed_gives_identical_metrics(real_data_root: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("first", "second"):
        cfg = compose_config(
            f"data.root={real_data_root}",
            "trainer.max_epochs=2",
            "trainer.limit_train_batches=10",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
            "logger=none",
            "seed=7",
            f"paths.output_dir={tmp_path / name}",
        )
        runs.append(train(cfg))
    for key in ("test/acc", "test/loss", "val/acc_best"):
        assert runs[0][key] == runs[1][key], key
