"""`python -m mnist_lab.predict ckpt_path=CKPT images=PATH`: classify image files with a checkpoint.

Real pictures are dark ink on light paper at any size, MNIST is light ink on black, 20×20 inside 28×28,
centred by mass. Each image goes through the same steps MNIST's authors used before it meets the model:
grayscale, invert a light background, crop to the ink, fit into 20×20 keeping the aspect ratio, centre by
centre of mass in 28×28, then the training normalization; before the crop, the paper (unevenly lit in a
photo, and grainy) is taken away.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import BinaryIO

import hydra
import torch
import torchvision.transforms.v2.functional as F
from omegaconf import DictConfig, ListConfig
from PIL import Image
from torch import Tensor

from mnist_lab import checkpoints
from mnist_lab.datasets import DATASETS
from mnist_lab.errors import UserError, one_line_errors
from mnist_lab.files import write_json

MAX_PIXELS = 40_000_000


class ImageError(UserError):
    """An input that is not a usable image; reported for its file alone."""


def read_image(source: Path | BinaryIO) -> Image.Image:
    """A file, or an upload's bytes, as a grayscale picture."""
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{width}×{height} pixels is more than {MAX_PIXELS // 1_000_000} MP; downscale it"
                )
            return image.convert("L")
    except Image.DecompressionBombError as err:
        raise ImageError(f"too large to decode safely ({err}); downscale it") from None
    except (OSError, ValueError) as err:  # not an image, empty, truncated
        raise ImageError(f"not a readable image ({err})") from None


def paper(x: Tensor) -> Tensor:
    """The background of a picture whose ink is brighter: a plane through its four edges' levels (a photo's
    light falls unevenly), raised by three times the grain left on the edges. Each edge's level is its
    lower quartile, which stays on the paper where a digit touches the frame along most of the edge."""
    top, bottom, left, right = (edge.quantile(0.25) for edge in (x[0], x[-1], x[:, 0], x[:, -1]))
    height, width = x.shape
    rows = torch.linspace(-0.5, 0.5, height)[:, None]
    cols = torch.linspace(-0.5, 0.5, width)[None]
    plane = (top + bottom + left + right) / 4 + (bottom - top) * rows + (right - left) * cols
    rest = x - plane
    grain = torch.cat([rest[0], rest[-1], rest[:, 0], rest[:, -1]]).abs().median()
    return plane + 3 * grain


def to_mnist(image: Image.Image, mean: float, std: float) -> Tensor:
    """One grayscale picture as a normalized [1, 28, 28] tensor laid out like an MNIST digit."""
    x = F.to_dtype(F.to_image(image), torch.float32, scale=True)[0]
    if torch.cat([x[0], x[-1], x[:, 0], x[:, -1]]).median() > 0.5:  # dark ink on light paper
        x = 1 - x
    x = (x - paper(x)).clamp(min=0)
    if x.max() <= 0.1:
        raise ImageError("no ink found: the image is blank")
    rows, cols = torch.nonzero(x > 0.25 * x.max(), as_tuple=True)
    x = x[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = x.shape
    scale = 20 / max(height, width)
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    x = F.resize(x[None], size, antialias=True)[0].clamp(min=0)
    x = x / x.max()
    ys, xs = torch.arange(size[0], dtype=torch.float32), torch.arange(size[1], dtype=torch.float32)
    centre_y = (x.sum(1) * ys).sum() / x.sum()
    centre_x = (x.sum(0) * xs).sum() / x.sum()
    top = int(min(max(round(14 - centre_y.item()), 0), 28 - size[0]))
    left = int(min(max(round(14 - centre_x.item()), 0), 28 - size[1]))
    canvas = torch.zeros(28, 28)
    canvas[top : top + size[0], left : left + size[1]] = x
    return ((canvas - mean) / std)[None]


def image_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        files += sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return files


def as_list(value: str | ListConfig) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Predicts every readable image; the unreadable ones are reported one line each, exit code 1."""
    with one_line_errors():
        paths = image_files([Path(p) for p in as_list(cfg.images)])
        checkpoint = checkpoints.load(cfg.ckpt_path, cfg.trust)
    info = DATASETS[checkpoint["config"]["data"]["name"]]
    mean, std = checkpoints.normalization(checkpoint)
    net = checkpoints.network(checkpoint)

    inputs, good, failed = [], [], 0
    for path in paths:
        try:
            if not path.exists():
                raise ImageError("no such file")
            inputs.append(to_mnist(read_image(path), mean, std))
            good.append(path)
        except ImageError as err:
            failed += 1
            print(f"error: {path}: {err}", file=sys.stderr)
    predictions = []
    if inputs:
        with torch.no_grad():
            probs = net(torch.stack(inputs)).float().softmax(1)
        predictions = [
            {"file": str(p), "label": int(q.argmax()), "probs": q.tolist()}
            for p, q in zip(good, probs, strict=True)
        ]
    write_json(Path(cfg.paths.output_dir) / "predictions.json", predictions)
    if cfg.json:
        print(json.dumps(predictions))
    else:
        for prediction in predictions:
            ranked = sorted(enumerate(prediction["probs"]), key=lambda item: -item[1])[: cfg.top]
            top = ", ".join(f"{info.classes[k]} {p:.1%}" for k, p in ranked)
            print(f"{prediction['file']}: {info.classes[prediction['label']]}  ({top})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
