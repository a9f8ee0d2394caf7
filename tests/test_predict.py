"""Predict on real image files: rendered digits, dark on light and off-centre, and broken files."""

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from mnist_lab import predict


def render_digits(folder: Path) -> dict[str, int]:
    """Digits 0-9 in two sizes, dark ink on light paper, off-centre on a larger canvas, PNG and JPEG."""
    folder.mkdir()
    truth = {}
    for size, (dx, dy), suffix in ((56, (10, 4), "png"), (90, (70, 30), "jpg")):
        font = ImageFont.load_default(size=size)
        for digit in range(10):
            image = Image.new("RGB", (200, 160), (236, 232, 220))
            ImageDraw.Draw(image).text((dx, dy), str(digit), fill=(25, 25, 40), font=font, stroke_width=1)
            path = folder / f"{digit}_{size}.{suffix}"
            image.save(path)
            truth[str(path)] = digit
    return truth


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        predict.main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_rendered_digits_are_recognised(
    trained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    truth = render_digits(tmp_path / "digits")
    code, out, _ = run([str(trained_checkpoint), str(tmp_path / "digits"), "--json"], capsys)
    assert code == 0
    predictions = json.loads(out)
    assert len(predictions) == 20
    assert all(len(p["probs"]) == 10 and abs(sum(p["probs"]) - 1) < 1e-4 for p in predictions)
    correct = sum(p["label"] == truth[p["file"]] for p in predictions)
    print(f"rendered digits recognised: {correct}/20")
    assert correct >= 17


def test_text_output_shows_top_k(
    trained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    render_digits(tmp_path / "digits")
    code, out, _ = run([str(trained_checkpoint), str(tmp_path / "digits" / "7_56.png"), "--top", "2"], capsys)
    assert code == 0
    assert out.startswith(f"{tmp_path / 'digits' / '7_56.png'}: 7 - seven  (7 - seven ")
    assert out.count("%") == 2


def test_bad_files_are_reported_and_good_ones_still_predicted(
    trained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "mixed"
    render_digits(folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    png = (folder / "3_56.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "huge.pgm").write_bytes(b"P5\n20000 20000\n255\n" + bytes(100))
    Image.new("L", (50, 50), 255).save(folder / "blank.png")

    code, out, err = run([str(trained_checkpoint), str(folder), "--json"], capsys)
    assert code == 1, "the exit code says that some files failed"
    assert len(json.loads(out)) == 20
    errors = err.strip().splitlines()
    assert len(errors) == 5
    reasons = {Path(line.split(": ")[1]).name: line for line in errors}
    assert "not a readable image" in reasons["notes.txt"] and "not a readable image" in reasons["empty.png"]
    assert "truncated" in reasons["truncated.png"]
    assert "downscale it" in reasons["huge.pgm"]
    assert "blank" in reasons["blank.png"]


def test_corrupt_checkpoint_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "model.ckpt").write_bytes(b"\x00" * 100)
    code, _, _ = run([str(tmp_path / "model.ckpt"), str(tmp_path)], capsys)
    assert "not a readable checkpoint" in str(code)
