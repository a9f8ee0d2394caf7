"""Predict on real image files: rendered digits, dark on light and off-centre, and broken files."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from mnist_lab.predict import ImageError, to_mnist
from tests.conftest import run_cli


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


def predict(tmp_path: Path, root: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_cli(tmp_path, root, *overrides, tool="mnist_lab.predict")


def test_rendered_digits_are_recognised(
    trained_checkpoint: Path, real_data_root: Path, tmp_path: Path
) -> None:
    truth = render_digits(tmp_path / "digits")
    done = predict(
        tmp_path,
        real_data_root,
        f"ckpt_path={trained_checkpoint}",
        f"images={tmp_path / 'digits'}",
        "json=true",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = json.loads(done.stdout)
    assert len(predictions) == 20
    assert all(len(p["probs"]) == 10 and abs(sum(p["probs"]) - 1) < 1e-4 for p in predictions)
    correct = sum(p["label"] == truth[p["file"]] for p in predictions)
    print(f"rendered digits recognised: {correct}/20")
    assert correct >= 17
    (record,) = (tmp_path / "out" / "predict").glob("*/predictions.json")
    assert json.loads(record.read_text()) == predictions


def test_text_output_shows_top_k(trained_checkpoint: Path, real_data_root: Path, tmp_path: Path) -> None:
    render_digits(tmp_path / "digits")
    seven, three = tmp_path / "digits" / "7_56.png", tmp_path / "digits" / "3_90.jpg"
    done = predict(
        tmp_path, real_data_root, f"ckpt_path={trained_checkpoint}", f"images=[{seven},{three}]", "top=2"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{seven}: 7 - seven  (7 - seven ") and lines[1].startswith(
        f"{three}: 3 - three"
    )
    assert all(line.count("%") == 2 for line in lines) and len(lines) == 2


def test_bad_files_are_reported_and_good_ones_still_predicted(
    trained_checkpoint: Path, real_data_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    render_digits(folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    png = (folder / "3_56.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "huge.pgm").write_bytes(b"P5\n20000 20000\n255\n" + bytes(100))
    Image.new("L", (50, 50), 255).save(folder / "blank.png")

    done = predict(
        tmp_path, real_data_root, f"ckpt_path={trained_checkpoint}", f"images={folder}", "json=true"
    )
    assert done.returncode == 1, "the exit code says that some files failed"
    assert len(json.loads(done.stdout)) == 20
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5, done.stderr
    reasons = {Path(line.split(": ")[1]).name: line for line in errors}
    assert "not a readable image" in reasons["notes.txt"] and "not a readable image" in reasons["empty.png"]
    assert "truncated" in reasons["truncated.png"]
    assert "downscale it" in reasons["huge.pgm"]
    assert "blank" in reasons["blank.png"]


def test_bad_checkpoint_and_missing_settings_are_one_clear_error(
    real_data_root: Path, tmp_path: Path
) -> None:
    (tmp_path / "model.ckpt").write_bytes(b"\x00" * 100)
    cases = {
        (f"ckpt_path={tmp_path / 'model.ckpt'}", f"images={tmp_path}"): "not a readable checkpoint",
        (f"ckpt_path={tmp_path / 'model.ckpt'}",): "images is required",
    }
    for overrides, expected in cases.items():
        done = predict(tmp_path, real_data_root, *overrides)
        assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith("error: ")
        assert expected in done.stderr and "Traceback" not in done.stderr


def test_uneven_light_and_paper_grain_do_not_reach_the_model() -> None:
    """A 7 photographed on grainy paper lit from one corner is prepared as the same 7 on clean paper (to a
    pixel of centring), and the same paper without ink is blank. (Subtracting one paper level, as before,
    scored 0.28 here: half the page came through as ink.)"""
    clean = Image.new("L", (160, 160), 200)
    ImageDraw.Draw(clean).line([(50, 40), (110, 40), (70, 125)], fill=30, width=9)
    rows, cols = np.mgrid[0:160, 0:160] / 160 - 0.5
    light = 1 + 0.35 * rows + 0.35 * cols
    grain = np.random.default_rng(0).normal(0, 8, (160, 160))

    def photo(picture: Image.Image) -> Image.Image:
        lit = np.asarray(picture, dtype=np.float64) * light + grain
        return Image.fromarray(lit.clip(0, 255).astype(np.uint8))

    expected, prepared = to_mnist(clean, 0, 1).flatten(), to_mnist(photo(clean), 0, 1)
    similarity = max(
        torch.nn.functional.cosine_similarity(expected, prepared.roll((dy, dx), (1, 2)).flatten(), dim=0)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    assert similarity > 0.95
    with pytest.raises(ImageError, match="blank"):
        to_mnist(photo(Image.new("L", (160, 160), 200)), 0, 1)
