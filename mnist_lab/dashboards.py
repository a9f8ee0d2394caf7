"""What TensorBoard shows of a test run beyond the scalars: pictures of the errors and the learned space.

At test time the TestReport callback collects, from the model's own forward passes, the confusion
matrix, per-class accuracy, the most confidently misclassified images and the penultimate-layer features
of the first test images; at the end it writes them to every TensorBoard logger of the run: figures
under test/, per-class scalars, and an embedding for the projector (PCA / t-SNE in the browser). Under
DDP the confusion matrix and per-class accuracy cover all ranks; the pictures come from rank 0's shard.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import matplotlib.pyplot as plt
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix


def misclassified_figure(
    images: Tensor, true: list[str], predicted: list[str], confidence: Tensor
) -> plt.Figure:
    """A grid of images, each titled `true → predicted (confidence)`."""
    columns = 8
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p, c in zip(axes.flat, images, true, predicted, confidence, strict=False):
        ax.imshow(image.squeeze(0).float().cpu().numpy(), cmap="gray")
        ax.set_title(f"{t} → {p}\n{c:.0%}", fontsize=8)
    figure.tight_layout()
    return figure


class TestReport(L.Callback):
    """Confusion matrix, per-class accuracy, confident mistakes and a projector embedding of the test set."""

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
        self._captured: dict[str, Tensor] = {}
        classifier = pl_module.net[-1]  # the last layer's input is the penultimate representation
        self._hook = classifier.register_forward_hook(self._capture)

    def _capture(self, module: torch.nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self._captured = {"features": inputs[0].detach(), "logits": output.detach()}

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
        logits = self._captured["logits"].float()
        self.confusion.update(logits, y)
        self.per_class.update(logits, y)
        embedded = sum(len(b) for b, _ in self.embedded)
        if embedded < self.embedding_size:
            take = self.embedding_size - embedded
            self.features.append(self._captured["features"][:take].float().flatten(1).cpu())
            self.embedded.append((x[:take].cpu(), y[:take].cpu()))
        confidence, predicted = logits.softmax(1).max(1)
        wrong = predicted != y
        candidates = {"x": x[wrong], "y": y[wrong], "pred": predicted[wrong], "conf": confidence[wrong]}
        if self.worst is not None:
            candidates = {k: torch.cat([self.worst[k], v]) for k, v in candidates.items()}
        order = candidates["conf"].argsort(descending=True)[: self.mistakes]
        self.worst = {k: v[order] for k, v in candidates.items()}

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._hook.remove()
        matrix, accuracies = self.confusion.compute(), self.per_class.compute()  # collectives: every rank
        writers = [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not writers or not trainer.is_global_zero:
            return
        step = trainer.global_step
        figure, _ = self.confusion.plot(val=matrix, labels=self.classes)
        figure.set_size_inches(8, 8)
        mistakes = misclassified_figure(
            self.worst["x"],
            [self.classes[i] for i in self.worst["y"]],
            [self.classes[i] for i in self.worst["pred"]],
            self.worst["conf"],
        )
        images = torch.cat([x for x, _ in self.embedded])
        labels = [self.classes[i] for i in torch.cat([y for _, y in self.embedded])]
        sprites = (images - images.amin()) / (images.amax() - images.amin())
        for writer in writers:
            writer.add_figure("test/confusion_matrix", figure, step, close=False)
            writer.add_figure("test/most_confident_mistakes", mistakes, step, close=False)
            for name, accuracy in zip(self.classes, accuracies, strict=True):
                writer.add_scalar(f"test/acc_per_class/{name.replace('/', '-')}", accuracy, step)
            writer.add_embedding(
                torch.cat(self.features),
                metadata=labels,
                label_img=sprites,
                global_step=step,
                tag="test/features",
            )
            writer.flush()
        plt.close(figure)
        plt.close(mistakes)
