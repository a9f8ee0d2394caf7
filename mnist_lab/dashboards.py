"""What TensorBoard shows of a run, laid out to be read at a glance.

`Board` is Lightning's TensorBoardLogger with three changes: it leaves out Lightning's own `epoch` scalar
(a chart of a counter, and the first card Time Series would open on), it writes a custom-scalars layout
(train and val loss on one chart, accuracy likewise, the learning rate), and `log_experiment` writes the
HParams tab's record once the run is tested: a curated set of settings, each always of one type, and
its results as metrics.

At test time the TestDashboard callback collects, from the model's own forward passes, the confusion
matrix, per-class accuracy, the most confidently misclassified images and the penultimate-layer features
of the first test images; at the end it writes them to every TensorBoard logger of the run as figures
under test/, the network's graph, and an embedding for the projector (PCA / t-SNE in the browser), all at
the run's last optimizer step. Under DDP the confusion matrix and per-class accuracy cover all ranks; the
pictures come from rank 0's shard.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import lightning as L
import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mnist_lab.models import Penultimate

log = logging.getLogger("mnist_lab")
NO_FEATURES = (
    "the network has no classifier layer to read its learned features from (name one `classifier`, "
    "or end in an nn.Linear): %s"
)

# Custom Scalars tab: charts that overlay several tags (regexes, matched from the start of the tag).
LAYOUT = {
    "curves": {
        "loss: train per step, train and val per epoch": [
            "Multiline",
            ["train/loss_step$", "train/loss$", "val/loss$"],
        ],
        "accuracy: train and val per epoch": ["Multiline", ["train/acc$", "val/acc$", "val/acc_best$"]],
        "learning rate per step": ["Multiline", ["lr-"]],
    }
}
# The HParams tab's metrics (scalar tags, read at their last value), beside the other scalars.
METRICS = ("test/acc", "test/loss", "val/acc_best", "train/seconds_per_epoch", "train/params")


class Board(TensorBoardLogger):
    """TensorBoardLogger without Lightning's `epoch` scalar, with a custom-scalars layout and a curated
    HParams record (see the module docstring)."""

    layout_written = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.layout_written:  # with the first scalars: the charts of the Custom Scalars tab
            self.experiment.add_custom_scalars(LAYOUT)
            self.layout_written = True
        # Lightning adds `epoch` to every logging call; the x-axis is optimizer steps everywhere.
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)

    @rank_zero_only
    def log_experiment(
        self, settings: Mapping[str, str | float | bool], scalars: Mapping[str, float], step: int
    ) -> None:
        """The HParams record: `settings`, and the METRICS Lightning has not logged (`scalars`), logged
        here at `step`; the hparams plugin reads each metric's last value."""
        for tag, value in scalars.items():
            self.experiment.add_scalar(tag, value, step)
        # The session's settings and status only: without an experiment summary of its own, TensorBoard
        # derives the experiment from all runs, marking the settings that differ between them (the
        # columns HParams shows first), and lists the runs' scalars, METRICS among them, as metrics.
        _, session_start, session_end = hparams_summary(dict(settings), dict.fromkeys(METRICS, 0.0))
        for summary in (session_start, session_end):
            self.experiment.file_writer.add_summary(summary)
        self.experiment.flush()


def one_type(value: Any) -> str | float | bool:
    """A setting as HParams shows it, of one type whatever the run: numbers as floats, lists and None as
    text (`[0.25, 0.5]`, `none`), so that the parallel-coordinates axes of a sweep line up."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if value is None:
        return "none"
    return json.dumps(value)


def curated_settings(cfg: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, str | float | bool]:
    """The settings that tell experiments apart, flat and typed one way (see one_type). Paths, `_target_`s
    and the speed knobs stay out: they change where or how fast a run goes, not what it learns."""
    model, data, trainer = cfg["model"], cfg["data"], cfg["trainer"]
    optimizer, scheduler = cfg["optimizer"], cfg.get("scheduler") or {}
    # the layer widths in order, whichever keys the network names them by: [512], [32, 64, 128], ...
    widths = [
        w for key in ("widths", "channels", "hidden") for w in np.atleast_1d(model.get(key, [])).tolist()
    ]
    settings: dict[str, Any] = {
        "dataset": data["name"],
        "model": results["model"],
        "model/widths": json.dumps(widths),
        "model/dropout": json.dumps(model.get("dropout", 0.0)),
        "optimizer": results["optimizer"],
        "optimizer/lr": optimizer.get("lr"),
        "optimizer/weight_decay": optimizer.get("weight_decay") or 0.0,
        "scheduler": str(scheduler.get("scheduler", {}).get("_target_", "none")).rsplit(".", 1)[-1].lower(),
        "batch_size": data["batch_size"],
        "max_epochs": trainer["max_epochs"],
        "steps": results["steps"],
        "precision": str(trainer["precision"]),
        "augment": ",".join(f"{k}={v}" for k, v in (data.get("augment") or {}).items() if k != "_target_")
        or "none",
        "label_smoothing": cfg.get("label_smoothing", 0.0),
        "gradient_clip_val": trainer.get("gradient_clip_val") or 0.0,
        "accumulate_grad_batches": trainer.get("accumulate_grad_batches") or 1,
        "val_size": data["val_size"],
        "seed": cfg["seed"],
    }
    return {key: one_type(value) for key, value in settings.items()}


def record_experiment(loggers: list[Any], run_config: Mapping[str, Any], results: Mapping[str, Any]) -> None:
    """Write the HParams record of a tested run to each Board among `loggers`: the curated settings, and
    as metrics test/acc, test/loss, val/acc_best (logged already) and the training time and size."""
    settings = curated_settings(run_config, results)
    scalars = {"train/params": float(results["params"])}
    if results.get("seconds_per_epoch") is not None:
        scalars["train/seconds_per_epoch"] = float(results["seconds_per_epoch"])
    for logger in loggers:
        if isinstance(logger, Board):
            logger.log_experiment(settings, scalars, results["steps"])


def confusion_figure(matrix: Tensor, classes: list[str]) -> plt.Figure:
    """Counts and, beside them, each row normalized to the share of that true class (recall on the
    diagonal), each with a title, class names and a colour bar."""
    counts = matrix.cpu().numpy()
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.6), layout="constrained")
    views = ((counts, "counts", "{:.0f}", None), (shares, "normalized by true class", "{:.0%}", 1.0))
    for ax, (values, title, fmt, vmax) in zip(axes, views, strict=True):
        shown = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
        figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        ticks = range(len(classes))
        ax.set_xticks(ticks, classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(ticks, classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix, {title}")
        threshold = values.max() / 2
        for (i, j), value in np.ndenumerate(values):
            if value:
                color = "white" if value > threshold else "black"
                ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=7, color=color)
    return figure


def per_class_figure(accuracies: Tensor, classes: list[str]) -> plt.Figure:
    """Per-class test accuracy as one bar chart, zoomed to the range the bars span."""
    values = accuracies.float().cpu().numpy()
    figure, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    bars = ax.bar(range(len(classes)), values, color="tab:blue")
    ax.bar_label(bars, [f"{v:.1%}" for v in values], fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
    low = max(0.0, float(values.min()) - 0.05)
    ax.set_ylim(low, 1.0 + (1.0 - low) * 0.08)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"per-class test accuracy (mean {values.mean():.1%})")
    return figure


def misclassified_figure(
    images: Tensor, true: list[str], predicted: list[str], confidence: Tensor
) -> plt.Figure:
    """A grid of images, each titled `true → predicted` and the confidence to one decimal (softmax
    rounds many confident mistakes to 100 % at whole percents); 11 inches wide: fits a 1600-px page."""
    columns = 8
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(11, rows * 1.55), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p, c in zip(axes.flat, images, true, predicted, confidence, strict=False):
        ax.imshow(image.squeeze(0).float().cpu().numpy(), cmap="gray")
        ax.set_title(f"{t} → {p}\n{float(c):.1%}", fontsize=7)
    figure.suptitle("most confident mistakes: true → predicted (confidence)", fontsize=10)
    return figure


class TestDashboard(L.Callback):
    """Confusion matrix, per-class accuracy, confident mistakes, the graph and a projector embedding of
    the test set."""

    def __init__(self, classes: list[str], embedding_size: int = 2000, mistakes: int = 32) -> None:
        self.classes = classes
        self.embedding_size = embedding_size
        self.mistakes = mistakes

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = len(self.classes)
        self.confusion = MulticlassConfusionMatrix(n).to(pl_module.device)
        self.per_class = MulticlassAccuracy(n, average=None).to(pl_module.device)
        self.features: list[Tensor] = []
        self.embedded: list[tuple[Tensor, Tensor]] = []
        self.worst: dict[str, Tensor] | None = None
        self.penultimate = Penultimate(pl_module.net)
        if self.penultimate.layer is None:
            log.info(NO_FEATURES, "TensorBoard's projector gets no embedding")

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        *_: Any,
    ) -> None:
        x, y = batch
        logits = self.penultimate.logits.float()
        self.confusion.update(logits, y)
        self.per_class.update(logits, y)
        embedded = sum(len(b) for b, _ in self.embedded)
        if embedded < self.embedding_size:
            take = self.embedding_size - embedded
            self.embedded.append((x[:take].cpu(), y[:take].cpu()))
            if self.penultimate.features is not None:
                self.features.append(self.penultimate.features[:take].float().cpu())
        confidence, predicted = logits.softmax(1).max(1)
        wrong = predicted != y
        candidates = {"x": x[wrong], "y": y[wrong], "pred": predicted[wrong], "conf": confidence[wrong]}
        if self.worst is not None:
            candidates = {k: torch.cat([self.worst[k], v]) for k, v in candidates.items()}
        order = candidates["conf"].argsort(descending=True)[: self.mistakes]
        self.worst = {k: v[order] for k, v in candidates.items()}

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.penultimate.remove()
        matrix, accuracies = self.confusion.compute(), self.per_class.compute()  # collectives: every rank
        writers = [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not writers or not trainer.is_global_zero:
            return
        step = trainer.global_step
        figures = {
            "test/confusion_matrix": confusion_figure(matrix, self.classes),
            "test/per_class_accuracy": per_class_figure(accuracies, self.classes),
            "test/most_confident_mistakes": misclassified_figure(
                self.worst["x"],
                [self.classes[i] for i in self.worst["y"]],
                [self.classes[i] for i in self.worst["pred"]],
                self.worst["conf"],
            ),
        }
        images = torch.cat([x for x, _ in self.embedded])
        labels = [self.classes[i] for i in torch.cat([y for _, y in self.embedded])]
        sprites = (images - images.amin()) / (images.amax() - images.amin())
        for writer in writers:
            for tag, figure in figures.items():
                writer.add_figure(tag, figure, step, close=False)
            add_graph(writer, pl_module.net, images[:1].to(pl_module.device))
            if self.features:
                writer.add_embedding(
                    torch.cat(self.features),
                    metadata=labels,
                    label_img=sprites,
                    global_step=step,
                    tag="test/penultimate_features",
                )
            writer.flush()
        for figure in figures.values():
            plt.close(figure)


def add_graph(writer: Any, net: torch.nn.Module, example: Tensor) -> None:
    """The network's graph for TensorBoard's Graphs tab: one trace of one image (~0.1 s on a CPU for the
    project's networks), skipped with a warning for a network torch.jit.trace cannot follow."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notice: add_graph uses it
            writer.add_graph(getattr(net, "_orig_mod", net), example.contiguous())
    except Exception as err:  # a compiled or otherwise untraceable network: the graph is a nicety
        log.warning("no model graph in TensorBoard: %s", str(err).splitlines()[0] if str(err) else err)
