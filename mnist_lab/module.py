"""The LightningModule: one classifier around any network, optimizer and schedule named in the config.

Its hyperparameters are the plain dicts of those config nodes, so a checkpoint rebuilds the exact model
and loads with torch's default `weights_only=True`.
"""

from typing import Any

import lightning as L
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy


class Classifier(L.LightningModule):
    def __init__(
        self,
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        compile: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = instantiate(model)
        if compile:
            self.net.compile()
        num_classes = model.get("num_classes", 10)
        # One metric object per stage, each with its own state; validate_args=False skips per-step checks
        # that would synchronise with the device. compute() syncs across DDP ranks.
        for stage in ("train", "val", "test"):
            setattr(
                self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro", validate_args=False)
            )
            setattr(self, f"{stage}_loss", MeanMetric())
        self.val_acc_best = MaxMetric()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        getattr(self, f"{stage}_acc").update(logits, y)
        getattr(self, f"{stage}_loss").update(loss.detach(), weight=len(y))
        return loss

    def _log_epoch(self, stage: str) -> dict[str, Tensor]:
        """Log the epoch's loss and accuracy as `{stage}/loss` and `{stage}/acc`, then start afresh."""
        values = {}
        for name in ("loss", "acc"):
            metric = getattr(self, f"{stage}_{name}")
            values[f"{stage}/{name}"] = metric.compute()
            metric.reset()
        self.log_dict(values, prog_bar=True)
        return values

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val")
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(values["val/acc"])
            self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        config = dict(self.hparams.scheduler)
        interval = config.pop("interval", "epoch")
        if config.get("total_steps", 0) is None:  # OneCycle-style schedules span the whole run
            config["total_steps"] = self.trainer.estimated_stepping_batches
        scheduler = instantiate(config, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
