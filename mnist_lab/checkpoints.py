"""Checkpoints: what a run stores beside Lightning's state, and how the tools find and read them.

Every checkpoint carries the run's resolved config (plain containers) and the RNG states, so that the
tools rebuild the dataset and model from the checkpoint alone, and a resumed run continues exactly.
All loading goes through torch.load(weights_only=True): a checkpoint never runs pickled code.
"""

from __future__ import annotations

import logging
import shutil
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
            shutil.copy2(path, moved(path))
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
