from pathlib import Path

import pytest

from mnist_lab import export


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_export_matches_pytorch(
    fmt: str, trained_checkpoint: Path, real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"model.{fmt}"
    difference = export.export(trained_checkpoint, fmt, out, str(real_data_root))
    print(f"{fmt} parity: max |logit difference| = {difference:.2e}")
    assert out.stat().st_size > 10_000
    assert difference < 1e-4


def test_export_never_overwrites(trained_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_text("mine")
    with pytest.raises(SystemExit, match="exists"):
        export.main([str(trained_checkpoint), "--out", str(tmp_path / "model.onnx")])
    assert (tmp_path / "model.onnx").read_text() == "mine"
