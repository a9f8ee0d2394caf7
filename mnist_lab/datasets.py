"""MNIST and Fashion-MNIST on disk: where the IDX files live, their checks, and the split tensors.

torchvision downloads (mirrors, md5) and parses the files; every file's header and length are checked
first, so that a damaged file is named as damaged instead of failing inside a parser. Nothing here
imports Lightning: predict and the other small tools read dataset facts from here.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig
from torch import Tensor
from torchvision import datasets

from mnist_lab.errors import DataError, one_line_errors


@dataclass(frozen=True)
class DatasetInfo:
    cls: type[datasets.MNIST]
    mean: float
    std: float

    @property
    def classes(self) -> list[str]:
        return list(self.cls.classes)

    def normalization(self, normalize: bool) -> tuple[float, float]:
        """(mean, std) that the pixels in [0, 1] are normalized with; (0, 1): pixels / 255 only, as Keras."""
        return (self.mean, self.std) if normalize else (0.0, 1.0)


DATASETS = {
    "mnist": DatasetInfo(datasets.MNIST, mean=0.1307, std=0.3081),
    "fashion_mnist": DatasetInfo(datasets.FashionMNIST, mean=0.2860, std=0.3530),
}


class DataNotFoundError(DataError):
    """The dataset is neither on disk nor downloadable; the message says where we looked and what to do."""


POINT_AT_A_COPY = (
    "Point at a local copy with MNIST_LAB_DATA_DIR=/path/to/data or data.root=/path/to/data "
    "(the folder that holds MNIST/raw and FashionMNIST/raw)."
)


def raw_folder(name: str, root: str) -> Path:
    return Path(root).resolve() / DATASETS[name].cls.__name__ / "raw"


def _not_found(name: str, root: str, reason: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{name} is not in {raw_folder(name, root)} and could not be downloaded ({reason}). {POINT_AT_A_COPY}"
    )


def check_idx(path: Path, item_shape: tuple[int, ...]) -> int:
    """Check an IDX file's magic number, dimensions and length before parsing it; return its item count.

    torchvision's parser fails on a bad file with an assertion or a reshape error that does not name
    the file; this says which file is wrong and how.
    """
    ndim = 1 + len(item_shape)
    replace = (
        f"Replace {path.name} with a good copy "
        "(delete it and run `python -m mnist_lab.datasets` to download it)."
    )
    try:
        with path.open("rb") as f:
            header = f.read(4 + 4 * ndim)
        size = path.stat().st_size
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror}. Check its permissions.") from None
    if len(header) < 4 + 4 * ndim or header[:3] != b"\x00\x00\x08" or header[3] != ndim:
        raise DataError(
            f"{path} is not an IDX file of {ndim}-dimensional uint8 data (magic number {header[:4].hex()}, "
            f"expected 0000080{ndim}). {replace}"
        )
    count, *dims = struct.unpack(f">{ndim}I", header[4:])
    if tuple(dims) != item_shape:
        raise DataError(f"{path} holds items of shape {tuple(dims)}, expected {item_shape}. {replace}")
    expected = 4 + 4 * ndim + count * math.prod(item_shape)
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise DataError(f"{path} is {state}: {size:,} bytes, expected {expected:,}. {replace}")
    return count


def split_files(name: str, root: str, train: bool) -> tuple[Path, Path]:
    prefix = "train" if train else "t10k"
    folder = raw_folder(name, root)
    return folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte"


def check_split(name: str, root: str, train: bool) -> None:
    """Both IDX files of a split are there, sound, and of one length: checked before any parser runs."""
    images, labels = split_files(name, root, train)
    missing = [p.name for p in (images, labels) if not p.exists()]
    if missing:
        raise DataNotFoundError(
            f"{name}: {', '.join(missing)} not found in {images.parent}. {POINT_AT_A_COPY}"
        )
    n_images, n_labels = check_idx(images, (28, 28)), check_idx(labels, ())
    if n_images != n_labels:
        raise DataError(
            f"{images.parent}: {images.name} has {n_images:,} images but {labels.name} {n_labels:,} labels; "
            "the two files come from different or damaged downloads. Replace both with good copies."
        )


def download(name: str, root: str) -> None:
    """Fetch the four IDX files of `name` into `root`, unless all are there; those are checked instead."""
    if all(p.exists() for train in (True, False) for p in split_files(name, root, train)):
        for train in (True, False):
            check_split(name, root, train)
        return
    try:
        DATASETS[name].cls(root, train=True, download=True)
    except (RuntimeError, OSError) as err:
        reason = str(err).splitlines()[-1].strip() or type(err).__name__
        raise _not_found(name, root, reason) from None


def load_split(name: str, root: str, train: bool) -> tuple[Tensor, Tensor]:
    """Images as uint8 [N, 28, 28] and labels as int64 [N], read from disk without downloading."""
    check_split(name, root, train)
    ds = DATASETS[name].cls(root, train=train, download=False)
    if ds.targets.min() < 0 or ds.targets.max() >= len(ds.classes):
        raise DataError(
            f"{split_files(name, root, train)[1]} holds labels outside 0..{len(ds.classes) - 1}. "
            "Replace it with a good copy."
        )
    return ds.data, ds.targets


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="datasets")
def main(cfg: DictConfig) -> None:
    """Download both datasets into data.root, or check the copies there."""
    with one_line_errors():
        for name in DATASETS:
            download(name, cfg.data.root)
            print(f"{name}: ready in {Path(cfg.data.root).resolve()}")


if __name__ == "__main__":
    main()
