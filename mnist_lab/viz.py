"""`python -m mnist_lab.viz [data=fashion_mnist] [ckpt_path=CKPT]`: pictures of a dataset, no browser.

After colah's "Visualizing MNIST": a grid of samples per class, then 2-D maps (PCA and t-SNE) of the
raw pixels and, given a checkpoint, of the network's penultimate-layer features, coloured by class, so
the two can be compared: a trained network pulls the classes apart.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import matplotlib.pyplot as plt
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import Tensor

from mnist_lab import checkpoints
from mnist_lab.dashboards import NO_FEATURES
from mnist_lab.errors import one_line_errors
from mnist_lab.files import save_figure
from mnist_lab.models import Penultimate

log = logging.getLogger("mnist_lab")


def sample_grid(
    images: Tensor, labels: Tensor, classes: list[str], title: str, per_class: int = 10
) -> plt.Figure:
    figure, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.9, len(classes) * 0.95))
    for row, name in enumerate(classes):
        picks = images[labels == row][:per_class]
        for ax, image in zip(axes[row], picks, strict=False):
            ax.imshow(image.numpy(), cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(title)
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


def features(net: torch.nn.Module, images: Tensor) -> Tensor | None:
    """The features the network's classifier layer sees for the images; None if it has no such layer."""
    penultimate = Penultimate(net)
    with torch.no_grad():
        net(images)
    penultimate.remove()
    return penultimate.features.float() if penultimate.features is not None else None


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="viz")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        checkpoint = checkpoints.load(cfg.ckpt_path, cfg.trust) if cfg.ckpt_path else None
        # a checkpoint's own dataset and normalization; the data root is this command's
        datamodule = (
            checkpoints.datamodule(checkpoint, cfg.data.root) if checkpoint else instantiate(cfg.data)
        )
        datamodule.setup()
    dataset = datamodule.hparams.name
    out = Path(cfg.paths.output_dir)
    raw, labels = (t[: cfg.samples] for t in datamodule.splits["test"])
    classes = datamodule.classes
    maps = {"pixels": raw.flatten(1).float() / 255}
    if checkpoint:
        normalized = torch.cat([x for x, _ in datamodule.test_dataloader()])[: cfg.samples]
        learned = features(checkpoints.network(checkpoint), normalized)
        if learned is None:
            log.info(NO_FEATURES, "viz maps the pixels only")
        else:
            maps["features"] = learned

    figures = {"samples": sample_grid(raw, labels, classes, f"{dataset}: test images per class")}
    for name, vectors in maps.items():
        pca = PCA(n_components=2).fit_transform(vectors.numpy())
        tsne = TSNE(n_components=2, init="pca", perplexity=30, random_state=0).fit_transform(vectors.numpy())
        figures[f"pca_{name}"] = scatter(pca, labels, classes, f"PCA of {dataset} {name}")
        figures[f"tsne_{name}"] = scatter(tsne, labels, classes, f"t-SNE of {dataset} {name}")
    for name, figure in figures.items():
        path = out / f"{name}.png"
        save_figure(figure, path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        print(path)


if __name__ == "__main__":
    main()
