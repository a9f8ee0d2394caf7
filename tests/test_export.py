"""Export through the command: both formats match PyTorch, and nothing is overwritten unasked."""

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


def test_an_existing_output_is_replaced_only_with_overwrite_true(
    trained_checkpoint: Path, real_data_root: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "model.onnx"
    mine.write_text("mine")
    command = [f"ckpt_path={trained_checkpoint}", f"output={mine}", "samples=16"]
    done = run_cli(tmp_path, real_data_root, *command, tool="mnist_lab.export")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: {mine} exists and was left as it is; add overwrite=true to replace it" in done.stderr
    assert mine.read_text() == "mine"
    done = run_cli(tmp_path, real_data_root, *command, "overwrite=true", tool="mnist_lab.export")
    assert done.returncode == 0 and f"wrote {mine}" in done.stdout, done.stderr[-2000:]
    assert mine.stat().st_size > 10_000 and not list(tmp_path.glob(".model.onnx.*"))
