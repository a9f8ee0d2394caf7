"""Export through the command: both formats match PyTorch, and nothing is overwritten."""

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_export_matches_pytorch(
    fmt: str, trained_checkpoint: Path, real_data_root: Path, tmp_path: Path
) -> None:
    done = run_cli(
        tmp_path, real_data_root, f"ckpt_path={trained_checkpoint}", f"format={fmt}", tool="mnist_lab.export"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (out,) = (tmp_path / "out" / "export").glob(f"*/model.{fmt}")
    assert f"wrote {out} · parity on 256 test images" in done.stdout
    print(done.stdout)
    assert out.stat().st_size > 10_000
    assert float(done.stdout.split("= ")[-1]) < 1e-4


def test_export_never_overwrites(trained_checkpoint: Path, real_data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_text("mine")
    done = run_cli(
        tmp_path,
        real_data_root,
        f"ckpt_path={trained_checkpoint}",
        f"output={tmp_path / 'model.onnx'}",
        tool="mnist_lab.export",
    )
    assert done.returncode == 1 and "exists; choose another output=FILE" in done.stderr
    assert (tmp_path / "model.onnx").read_text() == "mine"
