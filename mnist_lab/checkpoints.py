"""Checkpoints: how the tools find, read and restore them.

Every checkpoint carries the run's resolved config (plain containers; callbacks.RunRecord writes it), so
the tools rebuild the dataset and the network from the checkpoint alone. All loading goes through
torch.load(weights_only=True): a checkpoint never runs pickled code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mnist_lab import build
from mnist_lab.errors import ConfigError, UserError
from mnist_lab.module import Classifier


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


def classifier(checkpoint: dict[str, Any]) -> Classifier:
    """The trained LightningModule, rebuilt from the run config the checkpoint carries: what evaluate and
    the notebooks test."""
    module = build.build_module(checkpoint["config"])
    module.load_state_dict(checkpoint["state_dict"])
    return module


def network(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """The trained network as a plain nn.Module in eval mode: what predict, export and viz run."""
    net = build.network(checkpoint["config"]["model"])
    prefix = "net."
    net.load_state_dict(
        {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    )
    return net.eval()
