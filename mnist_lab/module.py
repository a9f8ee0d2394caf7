"""The LightningModule: one classifier around any network, optimizer and schedule named in the config.

Its hyperparameters are the plain dicts of those config nodes, so a checkpoint rebuilds the exact model
and loads with torch's default `weights_only=True`.
"""

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lab.errors import TrainingDiverged

Batch = tuple[Tensor, Tensor]


def optimizer_steps(batch: Batch | list[Batch]) -> list[Batch]:
    """The (x, y) pairs of a training batch, one per optimizer step (see data.steps_per_batch)."""
    return batch if isinstance(batch[0], tuple) else [batch]


class Classifier(L.LightningModule):
    def __init__(
        self,
        model: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        compile: bool = False,
        channels_last: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # Manual optimization, so that one Lightning batch can hold several optimizer steps
        # (data.steps_per_batch): Lightning's per-batch overhead is then paid once per group.
        self.automatic_optimization = False
        self.net = instantiate(model)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
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
        self.val_acc_best.persistent(True)  # in checkpoints, so a resumed run keeps the best so far
        self.scheduler_interval: str | None = None  # set by configure_optimizers

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))

    def _step(self, batch: Batch, stage: str) -> None:
        """Evaluate one batch and accumulate its loss and accuracy."""
        x, y = batch
        logits = self(x)
        self._update_metrics(stage, logits, y, F.cross_entropy(logits, y), len(y))

    def _update_metrics(self, stage: str, logits: Tensor, y: Tensor, losses: Tensor, sizes: Any) -> None:
        getattr(self, f"{stage}_acc").update(logits, y)
        getattr(self, f"{stage}_loss").update(losses, weight=sizes)

    def _log_epoch(self, stage: str) -> dict[str, Tensor]:
        """Log the epoch's loss and accuracy as `{stage}/loss` and `{stage}/acc`, then start afresh."""
        values = {}
        for name in ("loss", "acc"):
            metric = getattr(self, f"{stage}_{name}")
            values[f"{stage}/{name}"] = metric.compute()
            metric.reset()
        self.log_dict(values, prog_bar=True)
        return values

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> None:
        """One optimizer step per (x, y) pair: a batch is one pair, or a list of them.

        The group's metrics are updated once, after its steps: a torchmetrics update costs about as
        much as a small MLP step on a CPU.
        """
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers() if self.scheduler_interval == "step" else None
        steps = optimizer_steps(batch)
        logits, losses = [], []
        for x, y in steps:
            out = self(x)
            loss = F.cross_entropy(out, y, label_smoothing=self.hparams.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            logits.append(out.detach())
            losses.append(loss.detach())
        losses = torch.stack(losses)
        if not torch.isfinite(losses).all():  # one host sync per group of steps
            self._diverged(losses)
        sizes = torch.tensor([len(y) for _, y in steps], device=self.device)
        y = torch.cat([y for _, y in steps])
        self._update_metrics("train", torch.cat(logits), y, losses, sizes)

    def _diverged(self, losses: Tensor) -> None:
        checkpoint = self.trainer.checkpoint_callback
        kept = checkpoint.last_model_path if checkpoint else ""
        raise TrainingDiverged(
            f"the training loss became {losses[~torch.isfinite(losses)][0].item()} "
            f"in epoch {self.current_epoch} "
            f"(step {self.global_step}); lower optimizer.lr (now {self.hparams.optimizer.get('lr')}). "
            + (f"The last good checkpoint is {kept}." if kept else "No checkpoint was written before it.")
        )

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        self.log("lr", self.optimizers().param_groups[0]["lr"])
        if self.scheduler_interval == "epoch":
            self.lr_schedulers().step()

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
        self.scheduler_interval = config.pop("interval", "epoch")
        if config.get("total_steps", 0) is None:  # OneCycle-style schedules span the whole run
            batches = self.trainer.estimated_stepping_batches  # sets up the train loader first
            config["total_steps"] = batches * getattr(self.trainer.train_dataloader, "steps_per_batch", 1)
        return {"optimizer": optimizer, "lr_scheduler": instantiate(config, optimizer=optimizer)}
