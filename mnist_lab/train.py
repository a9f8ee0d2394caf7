"""The Hydra entry point: `python -m mnist_lab [overrides]` trains, tests and writes results.json."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import torchvision
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar, StochasticWeightAveraging
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from mnist_lab import checkpoints, hardware
from mnist_lab.callbacks import EpochTimer, RunRecord, SaveOnInterrupt
from mnist_lab.dashboards import TestDashboard, record_experiment
from mnist_lab.data import MNISTDataModule
from mnist_lab.errors import ConfigError, UserError
from mnist_lab.models import count_parameters
from mnist_lab.module import Classifier
from mnist_lab.run_dirs import record_failure

log = logging.getLogger("mnist_lab")
DDP_CONFIG = "MNIST_LAB_DDP_CONFIG"  # the resolved run config, handed to the DDP ranks Lightning starts
TRAIN_SIZE = 60_000  # both datasets


def as_containers(node: Any) -> Any:
    """A config node as plain dicts and lists (what checkpoints can store and load safely)."""
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def build_module(cfg: DictConfig) -> Classifier:
    model = as_containers(cfg.model)
    speed = {key: model.pop(key, False) for key in ("compile", "channels_last")}
    return Classifier(
        model=model,
        optimizer=as_containers(cfg.optimizer),
        scheduler=as_containers(cfg.get("scheduler")) or None,
        **speed,
        label_smoothing=cfg.label_smoothing,
    )


def settle_precision(cfg: DictConfig) -> str:
    """Make `trainer.precision=auto` the device's fast precision (hardware.choose_precision), so that
    checkpoints and results.json record what ran; log and return why."""
    cfg.trainer.precision, why = hardware.choose_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    log.info("precision %s (%s)", cfg.trainer.precision, why)
    return why


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
    return instantiate(cfg.trainer, callbacks=[*callbacks, *extra_callbacks], logger=loggers or False)


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


AT_LEAST = {
    "seed": 0,
    "data.batch_size": 1,
    "data.eval_batch_size": 1,
    "data.val_size": 0,
    "data.num_workers": 0,
    "trainer.max_epochs": -1,  # -1: no epoch limit (then trainer.max_steps ends the run)
}


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
    accelerator, devices = cfg.trainer.accelerator, cfg.trainer.devices
    if accelerator in ("gpu", "cuda", "mps") and hardware.device_type(accelerator) == "cpu":
        raise ConfigError(
            f"trainer.accelerator={accelerator} but torch sees no GPU (CUDA or Apple MPS) on this machine; "
            "use trainer.accelerator=cpu (or auto)"
        )
    gpus = {"cuda": torch.cuda.device_count(), "mps": 1}.get(hardware.device_type(accelerator))
    if gpus is not None and accelerator != "auto" and isinstance(devices, int) and devices > gpus:
        raise ConfigError(f"trainer.devices={devices} but this machine has {gpus} GPU(s)")


def resume_from(cfg: DictConfig) -> Path | None:
    """The checkpoint to resume from (`ckpt_path=PATH` or `last`), checked against this run's config."""
    if not cfg.get("ckpt_path"):
        return None
    path = checkpoints.find_last(cfg.paths.output_root) if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    checkpoints.check_compatible(checkpoints.load(path), cfg.data.name, cfg.model._target_, path)
    log.info("resuming from %s (this run writes to its own directory)", path)
    return path


@contextmanager
def isolated_job() -> Iterator[None]:
    """Leave the process as the job found it: no process group, the same environment variables (Lightning
    reads LOCAL_RANK and friends from os.environ) and torch thread count, so that the next job of a sweep,
    a study or a notebook starts afresh."""
    environ, threads = dict(os.environ), torch.get_num_threads()
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update({key: value for key, value in environ.items() if os.environ.get(key) != value})
        torch.set_num_threads(threads)


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    with isolated_job():
        return fit_and_test(cfg, callbacks)


def weights_to_test(trainer: L.Trainer, validated_apart: bool) -> tuple[str, str | None]:
    """Which weights the run tests, and the checkpoint they are in (None: the weights in memory).

    The best epoch by val/acc, unless the test set doubles as the validation set (picking the best epoch
    on it would report a selected test score) or SWA averaged the weights after the last checkpoint; the
    average is then saved as averaged.ckpt, so that the tested weights are on disk.
    """
    checkpoint = trainer.checkpoint_callback
    if any(isinstance(c, StochasticWeightAveraging) for c in trainer.callbacks):
        if checkpoint is not None and checkpoint.dirpath:
            trainer.save_checkpoint(Path(checkpoint.dirpath) / "averaged.ckpt")
        return "averaged", None
    best = checkpoint.best_model_path if checkpoint else ""
    return ("best", best) if best and validated_apart else ("last", None)


def fit_and_test(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """Fit on train, select the weights to test (see weights_to_test), test them once; return what
    results.json holds."""
    check_config(cfg)
    ckpt_path = resume_from(cfg)
    precision_reason = settle_precision(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule: MNISTDataModule = instantiate(cfg.data)
    module = build_module(cfg)
    timer = EpochTimer()
    run_config = as_containers(cfg)
    trainer = build_trainer(cfg, [timer, RunRecord(run_config), SaveOnInterrupt(), *callbacks])
    on_cpu = trainer.strategy.root_device.type == "cpu"
    if on_cpu:
        # Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (fork-safe CUDA checks), and torch's Adam and
        # Adadelta ask whether CUDA is available on every step: without a GPU driver each answer loads
        # NVML anew (~40 µs, 3 % of an MLP step). A CPU run has no CUDA to protect; isolated_job()
        # restores the variable afterwards.
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
        torch.set_num_threads(hardware.cpu_threads(trainer.num_devices if trainer.world_size > 1 else 1))
        # Lightning's DDP launch sets torch's threads again (the affinity over the local processes, all
        # CPUs of a SLURM node without CPU binding) unless OMP_NUM_THREADS is set: keep the allocation's.
        os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())
        hardware.keep_freed_memory()
    if trainer.world_size > 1:
        os.environ[DDP_CONFIG] = json.dumps(run_config)
        share_with_torchrun_ranks(run_config)
    log.info(
        "device %s · torch %s threads · output %s", device_name(trainer), torch.get_num_threads(), output_dir
    )

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    val_acc_best = trainer.callback_metrics.get("val/acc_best")
    tested_weights, test_ckpt = weights_to_test(trainer, cfg.data.val_size > 0)
    # Added for testing only: every callback costs Lightning a little on every training step.
    trainer.callbacks.append(TestDashboard(datamodule.classes))
    tested = trainer.test(
        module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False, weights_only=True
    )[0]

    results = {
        "test/acc": tested["test/acc"],
        "test/loss": tested["test/loss"],
        "val/acc_best": float(val_acc_best) if val_acc_best is not None else None,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "seconds_per_epoch": timer.mean_seconds,
        "epoch_seconds": timer.epoch_seconds,
        "params": count_parameters(module.net),
        "dataset": cfg.data.name,
        "model": type(module.net).__name__.lower(),
        "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1].lower(),
        "seed": cfg.seed,
        "tested": tested_weights,
        "batch_size": cfg.data.batch_size,
        "precision": str(cfg.trainer.precision),
        "precision_reason": precision_reason,
        "device": device_name(trainer),
        "versions": versions(),
        "output_dir": str(output_dir),
        "resumed_from": str(ckpt_path.resolve()) if ckpt_path else None,
    }
    # TensorBoard's HParams tab: the settings that tell runs apart, beside the results (dashboards.Board)
    record_experiment(trainer.loggers, run_config, results)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chance = 1 / len(datamodule.classes)
    if results["test/acc"] < 1.5 * chance:
        log.warning(
            "test/acc %.4f is chance level (%.2f): the run did not learn; try another optimizer.lr (now %s)",
            results["test/acc"],
            chance,
            cfg.optimizer.get("lr"),
        )
    seconds = f"{results['seconds_per_epoch']:.2f}" if results["seconds_per_epoch"] else "n/a"
    log.info("test/acc %.4f · %s s/epoch · results in %s", results["test/acc"], seconds, output_dir)
    return results


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Train one run. A run that fails ends the command with one error line; a failed job of a sweep
    records the error in its directory and lets the sweep go on (run_dirs.RunDirGuard counts them)."""
    try:
        return train(cfg)["val/acc_best"]
    except SIGTERMException:
        sys.exit("error: stopped by SIGTERM (the checkpoint it saved is named above)")
    except InstantiationException as err:  # a config value the target class rejects
        error = str(err.__cause__ or err)
    except (UserError, MisconfigurationException) as err:
        error = str(err)
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(f"error: {error}")
    record_failure(Path(cfg.paths.output_dir), error)
    log.error("error: %s", error)
    return None


def torchrun_store() -> torch.distributed.TCPStore | None:
    """The key-value store torchrun's agent keeps for its workers; None outside a multi-process torchrun.

    torchrun starts every rank with our command line at once, so each would have Hydra pick its own run
    dir; rank 0 puts its resolved config here instead and the other ranks train it (ddp_rank_main).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or int(os.environ.get("WORLD_SIZE", 1)) < 2:
        return None
    return torch.distributed.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timedelta(hours=1)
    )


def torchrun_key() -> str:
    return f"mnist_lab/run_config/{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}"


def share_with_torchrun_ranks(run_config: dict[str, Any]) -> None:
    if os.environ.get("RANK") == "0" and (store := torchrun_store()) is not None:
        store.set(torchrun_key(), json.dumps(run_config))


def ddp_rank_main(config: str) -> None:
    """A DDP rank that Lightning's launcher (or torchrun) started by re-running our command line.

    Under `-m` that command line is the whole sweep, and Hydra would pick a new output dir, so the rank
    ignores it and trains the exact resolved config of the job that started it (passed in DDP_CONFIG, or
    torchrun's store), logging to train_rank<N>.log in that job's directory.
    """
    cfg = OmegaConf.create(json.loads(config))
    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK", "?")
    handler = logging.FileHandler(Path(cfg.paths.output_dir) / f"train_rank{rank}.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler, logging.StreamHandler()])
    train(cfg)


def main() -> None:
    """`python -m mnist_lab`: Hydra composes the run, except in the extra ranks of a DDP run."""
    config = os.environ.get(DDP_CONFIG)
    if config and os.environ.get("LOCAL_RANK", "0") != "0":
        ddp_rank_main(config)
    elif os.environ.get("RANK", "0") != "0" and (store := torchrun_store()) is not None:
        ddp_rank_main(store.get(torchrun_key()).decode())
    else:
        hydra_main()
