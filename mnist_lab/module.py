"""The LightningModule: one classifier around any network, with the optimizer and schedule it is given.

lightning-hydra-template's split: the network is a plain nn.Module built elsewhere (mnist_lab.build, from
the config), the optimizer and schedule come as factories, so this module knows nothing of Hydra.
Automatic optimization: `training_step` returns the loss and Lightning does the rest, so every Trainer
flag (clipping, accumulation, max_steps, precision, the LR finder, SWA) works as Lightning documents it.
"""

import math
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lab.errors import TrainingDiverged

Batch = tuple[Tensor, Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# The optimizer and the trainer (whose estimated_stepping_batches sizes one-cycle schedules) to Lightning's
# lr_scheduler dict: {"scheduler": ..., "interval": ..., "frequency": ..., "monitor": ...}
SchedulerFactory = Callable[[torch.optim.Optimizer, L.Trainer], dict[str, Any]]


class Classifier(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        num_classes: int = 10,
        compile: bool = False,
        channels_last: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        # the run's whole config travels in every checkpoint (callbacks.RunRecord); these are the rest
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = label_smoothing
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        if compile:
            self.net.compile()
        self.guessing_loss = math.log(num_classes)  # cross-entropy of a uniform guess
        # One metric object per stage. Logged as objects, Lightning computes them at the end of each
        # epoch, synchronised across DDP ranks, and resets them. validate_args=False skips per-step checks.
        for stage in ("train", "val", "test"):
            accuracy = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
            setattr(self, f"{stage}_acc", accuracy)
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in checkpoints, so a resumed run keeps the best so far

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.train_acc.update(logits.detach(), y)
        self.train_loss.update(loss.detach(), len(y))
        # Logged, and checked, on the steps whose values Lightning writes (every log_every_n_steps):
        # a `self.log` call costs ~0.7 ms on a CPU, half a small MLP step, and a check waits for the device.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self._check_divergence(loss)
            self.log("train/loss_step", loss.detach(), prog_bar=True)
        return loss

    def _check_divergence(self, loss: Tensor) -> None:
        """Stop a run whose loss is not finite or ten times what guessing scores (ln of the class count):
        such a run learns nothing more, and only a lower learning rate helps."""
        if torch.isfinite(loss) and loss <= 10 * self.guessing_loss:
            return
        kept = [c.best_model_path for c in self.trainer.checkpoint_callbacks if c.best_model_path]
        raise TrainingDiverged(
            f"the training loss reached {loss.item():.4g} in epoch {self.current_epoch} "
            f"(step {self.global_step}; guessing scores {self.guessing_loss:.2f}): the run diverged. "
            f"Lower optimizer.lr (now {self.trainer.optimizers[0].defaults.get('lr')}). "
            + (f"Kept from before it: {', '.join(kept)}." if kept else "No checkpoint was written before it.")
        )

    def _evaluate(self, batch: Batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        acc, loss = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_loss")
        acc.update(logits, y)
        loss.update(F.cross_entropy(logits, y), len(y))
        self.log(f"{stage}/loss", loss, prog_bar=True)
        self.log(f"{stage}/acc", acc, prog_bar=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_train_epoch_end(self) -> None:
        if not self.train_loss.update_called:  # resumed from a checkpoint saved after the epoch's last batch
            return
        self._check_divergence(self.train_loss.compute())  # cached: logged below without recomputing
        self.log("train/loss", self.train_loss)
        self.log("train/acc", self.train_acc)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best.update(self.val_acc.compute())
        # the same value on every rank (val_acc is synchronised): sync_dist only averages equal numbers
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer, self.trainer)}
