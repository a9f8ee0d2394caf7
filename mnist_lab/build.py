"""From a composed config to the objects of a run: the checks, the network, the LightningModule and the
Trainer. Training, evaluation, the LR finder, the search and the benchmarks all build through here."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from omegaconf import DictConfig, OmegaConf

from mnist_lab import hardware
from mnist_lab.errors import ConfigError
from mnist_lab.files import AtomicCheckpointIO
from mnist_lab.module import Classifier, SchedulerFactory

log = logging.getLogger("mnist_lab")
TRAIN_SIZE = 60_000  # both datasets
SPEED_KEYS = ("compile", "channels_last")  # model options that change how the network runs, not what it is
AT_LEAST = {
    "seed": 0,
    "data.batch_size": 1,
    "data.eval_batch_size": 1,
    "data.val_size": 0,
    "data.num_workers": 0,
    "trainer.max_epochs": -1,  # -1: no epoch limit (then trainer.max_steps ends the run)
}


def as_containers(node: Any) -> Any:
    """A config node as plain dicts and lists (what checkpoints can store and load safely); plain values
    and containers pass through."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def short_name(target: str) -> str:
    """`torch.optim.Adam` → `adam`: how results and tables name a class from its `_target_`."""
    return target.rsplit(".", 1)[-1].lower()


def check_config(cfg: DictConfig) -> None:
    """Reject settings that cannot work before any data is loaded or any time is spent."""
    for key, minimum in AT_LEAST.items():
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{key}={value!r}: must be a whole number ≥ {minimum}")
    if cfg.trainer.max_epochs == 0:
        raise ConfigError("trainer.max_epochs=0 trains nothing: use ≥ 1, or -1 with trainer.max_steps=N")
    if cfg.data.val_size >= TRAIN_SIZE:
        raise ConfigError(
            f"data.val_size={cfg.data.val_size}: must be < {TRAIN_SIZE} to leave images to train on"
        )
    lr = cfg.optimizer.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or lr <= 0:
        raise ConfigError(f"optimizer.lr={lr!r}: must be a positive number")
    if cfg.get("hparams_search"):
        raise ConfigError(
            "hparams_search is a search space for the search tool: run "
            "`python -m mnist_lab.tune hparams_search=NAME ...` (python -m mnist_lab trains one run)"
        )
    accelerator, devices = cfg.trainer.accelerator, cfg.trainer.devices
    device = hardware.device_type(accelerator)
    if accelerator in ("gpu", "cuda", "mps") and device == "cpu":
        raise ConfigError(
            f"trainer.accelerator={accelerator} but torch sees no GPU (CUDA or Apple MPS) on this machine; "
            "use trainer.accelerator=cpu (or auto)"
        )
    gpus = {"cuda": torch.cuda.device_count(), "mps": 1}.get(device)
    if gpus is not None and accelerator != "auto" and isinstance(devices, int) and devices > gpus:
        raise ConfigError(f"trainer.devices={devices} but this machine has {gpus} GPU(s)")


def settle_precision(cfg: DictConfig) -> str:
    """Make `trainer.precision=auto` the device's fast precision (hardware.choose_precision), so that
    checkpoints and results.json record what ran; log and return why."""
    cfg.trainer.precision, why = hardware.choose_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    log.info("precision %s (%s)", cfg.trainer.precision, why)
    return why


def network(model: Mapping[str, Any]) -> torch.nn.Module:
    """The network a `model` config node names (its speed options left out)."""
    return instantiate({k: v for k, v in model.items() if k not in SPEED_KEYS})


def scheduler_factory(config: Mapping[str, Any] | None) -> SchedulerFactory | None:
    """Lightning's lr_scheduler dict from a `scheduler` config node: the torch scheduler under `scheduler`,
    beside `interval`, `frequency`, `monitor`; a one-cycle `total_steps: null` is sized to the run."""
    if not config:
        return None

    def make(optimizer: torch.optim.Optimizer, trainer: L.Trainer) -> dict[str, Any]:
        options = dict(config)
        scheduler = dict(options.pop("scheduler"))
        if "total_steps" in scheduler and scheduler["total_steps"] is None:
            steps = trainer.estimated_stepping_batches  # max_steps, epochs, limits, accumulation
            if math.isinf(steps):
                raise ConfigError(
                    f"{short_name(scheduler['_target_'])} spans the whole run, which has no end: "
                    "set trainer.max_epochs or trainer.max_steps"
                )
            scheduler["total_steps"] = int(steps)
        return {"scheduler": instantiate(scheduler, optimizer=optimizer), **options}

    return make


def build_module(run: Mapping[str, Any]) -> Classifier:
    """The LightningModule of a run config (composed, or as a checkpoint stores it)."""
    model = as_containers(run["model"])
    return Classifier(
        network(model),
        optimizer=instantiate(as_containers(run["optimizer"]), _partial_=True),
        scheduler=scheduler_factory(as_containers(run.get("scheduler"))),
        num_classes=model.get("num_classes", 10),
        compile=model.get("compile", False),
        channels_last=model.get("channels_last", False),
        label_smoothing=run.get("label_smoothing", 0.0),
    )


def build_trainer(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """The configured Trainer. The flags that switch off the logger or the progress bar win over the
    callbacks config: Lightning refuses a LearningRateMonitor without a logger and a progress bar
    callback with `enable_progress_bar=false`."""
    if cfg.trainer.precision == "auto":
        settle_precision(cfg)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if not loggers:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    # checkpoints renamed into place whole (files.AtomicCheckpointIO), unless the config names its own plugins
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    return instantiate(
        cfg.trainer, callbacks=[*callbacks, *extra_callbacks], logger=loggers or False, **plugins
    )
