"""Checkpoints: what a run stores beside Lightning's state, and how the tools find and read them.

Every checkpoint carries the run's resolved config (plain containers) and the RNG states, so that the
tools rebuild the dataset and model from the checkpoint alone, and a resumed run continues exactly.
All loading goes through torch.load(weights_only=True): a checkpoint never runs pickled code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnist_lab.errors import ConfigError, UserError

log = logging.getLogger("mnist_lab")


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the run."""


def load(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, or one clear error if it is missing, truncated or not ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails in many ways on a damaged file; all mean the same here
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}"
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({reason}); it may be truncated or corrupt. "
            "Use another one, e.g. checkpoints/last.ckpt or checkpoints/best.ckpt of the same run."
        ) from None
    if "config" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not an mnist_lab checkpoint (it has no run config)")
    return checkpoint


def find_last(output_root: str | Path) -> Path:
    """`ckpt_path=last`: the newest last.ckpt under the output root's runs."""
    candidates = list(Path(output_root).glob("runs/*/checkpoints/last.ckpt"))
    if not candidates:
        raise CheckpointError(
            f"ckpt_path=last: no runs/*/checkpoints/last.ckpt under {Path(output_root).resolve()}"
        )
    return max(candidates, key=lambda p: p.stat().st_mtime)


def check_compatible(checkpoint: dict[str, Any], data: str, model: str, path: Path) -> None:
    """Resuming needs the same dataset and network as the checkpoint's run."""
    trained = checkpoint["config"]
    was = (trained["data"]["name"], trained["model"]["_target_"])
    if was != (data, model):
        raise ConfigError(
            f"{path} was trained on data={was[0]} with {was[1]}; this run asks for data={data} with {model}. "
            "Resume with the same data and model options, or start a new run without ckpt_path."
        )


class RunState(L.Callback):
    """Stores the run config and the RNG states in every checkpoint; restores the RNG states on resume.

    Lightning restores weights, optimizer, epoch and loops but not torch's global RNG that dropout and
    augmentation draw from (the loader's order depends on seed and epoch only); without it a resumed
    run would not end where an uninterrupted one does.
    On Ctrl-C or SIGTERM it writes interrupted.ckpt beside the other checkpoints.
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
        if rng is None:
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])

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
