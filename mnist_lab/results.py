"""results.json: what a tested network scored and what it ran on, written by train and evaluate alike."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torchvision

from mnist_lab.hardware import cpu_kind
from mnist_lab.models import count_parameters, mflops_per_image


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
    }


def device_name(trainer: L.Trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def results(
    metrics: Mapping[str, float],
    run: Mapping[str, Any],
    net: torch.nn.Module,
    trainer: L.Trainer,
    /,
    **facts: Any,
) -> dict[str, Any]:
    """The test metrics first, then the caller's facts (epochs and timing of a run, the checkpoint of an
    evaluation), then what was tested and on what."""
    return {
        "test/acc": metrics["test/acc"],
        "test/loss": metrics["test/loss"],
        **facts,
        "params": count_parameters(net),
        "mflops": mflops_per_image(net),
        "dataset": run["data"]["name"],
        "model": type(getattr(net, "_orig_mod", net)).__name__.lower(),
        "seed": run["seed"],
        "precision": str(trainer.precision),
        "device": device_name(trainer),
        "cpu": cpu_kind(),
        "versions": versions(),
    }
