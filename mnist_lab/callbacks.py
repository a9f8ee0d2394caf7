"""Callbacks the entry point always adds."""

import time

import lightning as L
import torch


class EpochTimer(L.Callback):
    """Wall time of each training epoch, validation excluded: what `seconds_per_epoch` reports."""

    def __init__(self) -> None:
        self.epoch_seconds: list[float] = []
        self._in_epoch = False
        self._started: float | None = None
        self._elapsed = 0.0

    def _now(self, trainer: L.Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    def _pause(self, trainer: L.Trainer) -> None:
        if self._started is not None:
            self._elapsed += self._now(trainer) - self._started
            self._started = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_epoch = True
        self._elapsed = 0.0
        self._started = self._now(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._in_epoch:  # validation in the middle of an epoch
            self._started = self._now(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause(trainer)
        self._in_epoch = False
        self.epoch_seconds.append(self._elapsed)

    @property
    def mean_seconds(self) -> float | None:
        return sum(self.epoch_seconds) / len(self.epoch_seconds) if self.epoch_seconds else None
