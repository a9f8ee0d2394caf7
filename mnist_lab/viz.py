"""`python -m mnist_lab.viz [--data mnist] [--ckpt CKPT] [--out DIR]`: pictures of a dataset, no browser.

After colah's "Visualizing MNIST": a grid of samples per class, then 2-D maps (PCA and t-SNE) of the
raw pixels and, given a checkpoint, of the network's penultimate-layer features, coloured by class, so
the two can be compared: a trained network pulls the classes apart.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from hydra.utils import instantiate
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import Tensor

from mnist_lab import checkpoints
from mnist_lab.data import DATASETS, MNISTDataModule
from mnist_lab.errors import UserError
from mnist_lab.evaluate import restore
from mnist_lab.module import Classifier


def sample_grid(images: Tensor, labels: Tensor, classes: list[str], per_class: int = 10) -> plt.Figure:
    figure, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.9, len(classes) * 0.95))
    for row, name in enumerate(classes):
        picks = images[labels == row][:per_class]
        for ax, image in zip(axes[row], picks, strict=False):
            ax.imshow(image.numpy(), cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle("samples per class")
    return figure


def scatter(points: np.ndarray, labels: Tensor, classes: list[str], title: str) -> plt.Figure:
    figure, ax = plt.subplots(figsize=(7, 6))
    dots = ax.scatter(points[:, 0], points[:, 1], c=labels.numpy(), cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
    colorbar = figure.colorbar(dots, ticks=range(len(classes)))
    colorbar.ax.set_yticklabels(classes, fontsize=8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return figure


def features(module: Classifier, images: Tensor) -> Tensor:
    """The network's penultimate-layer features: the input of its last layer."""
    captured = []
    hook = module.net[-1].register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].flatten(1)))
    with torch.no_grad():
        module(images)
    hook.remove()
    return captured[0].float()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATASETS), default="mnist", help="ignored with --ckpt")
    parser.add_argument("--data-root", default=os.environ.get("MNIST_LAB_DATA_DIR", "data"))
    parser.add_argument(
        "--ckpt", type=Path, help="also map this checkpoint's learned features (on its dataset)"
    )
    parser.add_argument("--samples", type=int, default=2000, help="test images in the maps")
    parser.add_argument("--out", type=Path, help="default: outputs/viz/DATA")
    args = parser.parse_args(argv)
    try:
        checkpoint = checkpoints.load(args.ckpt) if args.ckpt else None
    except UserError as err:
        sys.exit(f"error: {err}")
    if checkpoint:  # the checkpoint's dataset, normalized as it was trained
        datamodule = instantiate(checkpoint["config"]["data"], root=args.data_root)
    else:
        datamodule = MNISTDataModule(name=args.data, root=args.data_root)
    datamodule.setup()
    dataset = datamodule.hparams.name
    out = args.out or Path(os.environ.get("MNIST_LAB_OUTPUT_DIR", "outputs")) / "viz" / dataset
    out.mkdir(parents=True, exist_ok=True)
    raw, labels = (t[: args.samples] for t in datamodule.splits["test"])
    classes = datamodule.classes
    maps = {"pixels": raw.flatten(1).float() / 255}
    if checkpoint:
        normalized = torch.cat([x for x, _ in datamodule.test_dataloader()])[: args.samples]
        maps["features"] = features(restore(checkpoint), normalized)

    written = []
    figures = {"samples": sample_grid(raw, labels, classes)}
    for name, vectors in maps.items():
        pca = PCA(n_components=2).fit_transform(vectors.numpy())
        tsne = TSNE(n_components=2, init="pca", perplexity=30, random_state=0).fit_transform(vectors.numpy())
        figures[f"pca_{name}"] = scatter(pca, labels, classes, f"PCA of {dataset} {name}")
        figures[f"tsne_{name}"] = scatter(tsne, labels, classes, f"t-SNE of {dataset} {name}")
    for name, figure in figures.items():
        path = out / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    print("\n".join(map(str, written)))


if __name__ == "__main__":
    main()
