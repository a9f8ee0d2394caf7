"""Digits that are not MNIST's: how well checkpoints read other handwriting, typed digits and photo-like
pictures of both, beside their MNIST test accuracy.

No model is trained or tuned on these sets; they are made here, the same every time:
- uci: the 1,797 digits that scikit-learn ships as `load_digits`, the test set of UCI's "Optical
  Recognition of Handwritten Digits" (writers other than MNIST's, scanned and reduced to 8×8 pixels of
  17 grey levels): low resolution, digits that touch the frame;
- fonts: 0-9 typed in the 21 text fonts that matplotlib ships (DejaVu Sans, Sans Mono and Serif, STIX,
  Computer Modern; regular, bold, italic), 64×64: thin and thick strokes;
- photos: every uci and fonts digit as a phone would photograph it on paper: dark ink on a light,
  textured, unevenly lit page, slightly blurred, off-centre in a 160×160 picture.
Every picture goes through predict's preparation (mnist_lab.predict.to_mnist), as a user's file does.

`python benchmarks/handwriting.py CKPT [CKPT ...] [--write BENCHMARKS.md]`
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
from pathlib import Path

import matplotlib
import numpy as np
import torch
from bench import header, publish
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from sklearn.datasets import load_digits
from torch import Tensor

from mnist_lab import checkpoints
from mnist_lab.datasets import load_split
from mnist_lab.predict import to_mnist

FONTS = [
    *(f"DejaVuSans{s}.ttf" for s in ("", "-Bold", "-Oblique", "-BoldOblique")),
    *(f"DejaVuSansMono{s}.ttf" for s in ("", "-Bold", "-Oblique", "-BoldOblique")),
    *(f"DejaVuSerif{s}.ttf" for s in ("", "-Bold", "-Italic", "-BoldItalic")),
    *(f"STIXGeneral{s}.ttf" for s in ("", "Bol", "Italic", "BolIta")),
    *(f"cm{s}10.ttf" for s in ("r", "ss", "tt", "ti", "b")),
]
Sample = tuple[Image.Image, int]  # a grayscale picture, light ink on dark like MNIST, and its digit


def uci() -> list[Sample]:
    digits = load_digits()
    pixels = (digits.images * 255 / 16).round().astype(np.uint8)
    return [(Image.fromarray(p), int(t)) for p, t in zip(pixels, digits.target, strict=True)]


def fonts() -> list[Sample]:
    folder = Path(matplotlib.get_data_path(), "fonts", "ttf")
    samples = []
    for name in FONTS:
        font = ImageFont.truetype(str(folder / name), 48)
        for digit in range(10):
            image = Image.new("L", (64, 64), 0)
            ImageDraw.Draw(image).text((32, 32), str(digit), fill=255, font=font, anchor="mm")
            samples.append((image, digit))
    return samples


def photographed(samples: list[Sample], seed: int = 0) -> list[Sample]:
    """Each digit 64 pixels tall, dark on paper with texture and a light gradient, blurred, off-centre."""
    rng = np.random.default_rng(seed)
    photos = []
    for image, digit in samples:
        ink = np.asarray(image.resize((64, 64), Image.BILINEAR), dtype=np.float32) / 255
        size = 160
        noise = Image.fromarray(rng.normal(128, 40, (size, size)).clip(0, 255).astype(np.uint8))
        texture = np.asarray(noise.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32)
        slope = rng.uniform(-0.35, 0.35, 2)
        rows, cols = np.mgrid[0:size, 0:size] / size - 0.5
        paper = (rng.uniform(180, 235) + (texture - 128) * 0.5) * (1 + slope[0] * rows + slope[1] * cols)
        mask = np.zeros((size, size), np.float32)
        top, left = rng.integers(8, size - 72, 2)
        mask[top : top + 64, left : left + 64] = ink
        picture = paper * (1 - 0.85 * mask)
        photo = Image.fromarray(picture.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.0))
        photos.append((photo, digit))
    return photos


def prepared(samples: list[Sample]) -> tuple[Tensor, Tensor]:
    """The pictures through predict's preparation, in [0, 1] (normalized per checkpoint), and their digits."""
    return torch.stack([to_mnist(image, 0, 1) for image, _ in samples]), torch.tensor([d for _, d in samples])


def accuracy(net: torch.nn.Module, x: Tensor, labels: Tensor, mean: float, std: float) -> tuple[float, str]:
    """The share read right, and the most frequent mistake ("8 read as 1: 42")."""
    with torch.no_grad():
        predicted = net((x - mean) / std).argmax(1)
    wrong = collections.Counter(
        (t, p) for t, p in zip(labels.tolist(), predicted.tolist(), strict=True) if t != p
    )
    (true, read), count = wrong.most_common(1)[0] if wrong else ((0, 0), 0)
    return (predicted == labels).float().mean().item(), f"{true} read as {read}: {count}" if count else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument(
        "--data-root",
        default=os.environ.get("MNIST_LAB_DATA_DIR", "data"),
        help="where MNIST's test set is, as data.root for training (default: $MNIST_LAB_DATA_DIR or ./data)",
    )
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()
    sets = {"uci": uci(), "fonts": fonts()}
    sets["photos"] = photographed(sets["uci"] + sets["fonts"])
    inputs = {name: prepared(samples) for name, samples in sets.items()}
    images, labels = load_split("mnist", args.data_root, train=False)
    print(header("cpu"), flush=True)
    rows = []
    for path in args.checkpoints:
        checkpoint = checkpoints.load(path)
        mean, std = checkpoints.normalization(checkpoint)
        net = checkpoints.network(checkpoint).float()
        with torch.no_grad():
            read = net((images[:, None].float() / 255 - mean) / std).argmax(1)
        mnist = (read == labels).float().mean().item()
        scores = {name: accuracy(net, *inputs[name], mean, std) for name in sets}
        pooled = sum(scores[n][0] * len(sets[n]) for n in sets) / sum(map(len, sets.values()))
        cells = " | ".join(f"{acc:.1%} ({mistake})" for acc, mistake in scores.values())
        rows.append(f"| {path} | {mnist:.2%} | {cells} | {pooled:.1%} |")
        print(rows[-1], flush=True)
    sizes = ", ".join(f"{name} {len(samples):,}" for name, samples in sets.items())
    block = "\n".join(
        [
            f"### Not MNIST: other handwriting, fonts, photos ({datetime.date.today()})",
            "",
            header("cpu"),
            "",
            f"`python benchmarks/handwriting.py {' '.join(map(str, args.checkpoints))}`; pictures: {sizes}",
            "",
            "| checkpoint | MNIST test | uci (most frequent mistake) | fonts | photos | all not-MNIST |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    publish(block, args.write)


if __name__ == "__main__":
    main()
