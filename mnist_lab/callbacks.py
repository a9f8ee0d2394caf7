"""Callbacks the entry point always adds: the epoch timer, what every checkpoint carries, and the
checkpoint written on Ctrl-C or SIGTERM."""

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnist_lab import files

log = logging.getLogger("mnist_lab")


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


def carry_best(state: dict[str, Any] | None, dirpath: str | None, copy_files: bool) -> None:
    """Point ModelCheckpoint's saved state at a resumed run's own directory.

    Lightning restores the best score only when the checkpoint directory is unchanged; in a new run dir
    the first epoch after the resume would count as the best. So the earlier run's best files are copied
    (the earlier run keeps its own) and the state names the copies. If a best file is gone, the state is
    left as it is and Lightning tracks the best anew.
    """
    if not state or not dirpath or state.get("dirpath") in (None, dirpath):
        return
    best = state.get("best_k_models", {})
    if not all(Path(path).is_file() for path in best):
        return
    old, new = Path(state["dirpath"]), Path(dirpath)

    def moved(path: str) -> str:
        return str(new / Path(path).name) if path and Path(path).parent == old else path

    if copy_files:
        new.mkdir(parents=True, exist_ok=True)
        for path in best:
            files.copy(path, moved(path))
    state["best_k_models"] = {moved(path): score for path, score in best.items()}
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        state[key] = moved(state.get(key, ""))
    state["dirpath"] = dirpath


class RunRecord(L.Callback):
    """Stores the run config and the RNG states in every checkpoint; on resume restores the RNG states
    and carries the best checkpoint into the new run's directory (carry_best).

    Lightning restores weights, optimizer, epoch and loops but not torch's global RNG that dropout and
    augmentation draw from (the loader's order depends on seed and epoch only); without it a resumed
    run would not end where an uninterrupted one does.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["config"] = self.config
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        rng = checkpoint.get("rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"]:
                torch.cuda.set_rng_state_all(rng["cuda"])
        for callback in trainer.checkpoint_callbacks:  # before Lightning hands them their saved state
            state = checkpoint.get("callbacks", {}).get(callback.state_key)
            carry_best(state, callback.dirpath, copy_files=trainer.is_global_zero)


class SaveOnInterrupt(L.Callback):
    """On Ctrl-C or SIGTERM, writes interrupted.ckpt beside the other checkpoints."""

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt | SIGTERMException):
            return
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None or checkpoint.dirpath is None:
            return
        path = Path(checkpoint.dirpath) / "interrupted.ckpt"
        trainer.save_checkpoint(path)
        log.warning("interrupted: saved %s; resume with ckpt_path=%s", path, path)
