"""`python -m mnist_lab [overrides]`: compose a run, fit it, test the chosen weights, write results.json."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import StochasticWeightAveraging, WeightAveraging
from omegaconf import DictConfig, OmegaConf

from mnist_lab import checkpoints, hardware, launch
from mnist_lab.build import (
    as_containers,
    build_module,
    build_trainer,
    check_config,
    settle_precision,
    short_name,
)
from mnist_lab.callbacks import EpochTimer, RunRecord, SaveOnInterrupt
from mnist_lab.dashboards import TestDashboard, record_experiment
from mnist_lab.data import MNISTDataModule
from mnist_lab.errors import one_line_errors
from mnist_lab.files import write_json
from mnist_lab.results import device_name, results
from mnist_lab.run_dirs import record_failure

log = logging.getLogger("mnist_lab")


def resume_from(cfg: DictConfig) -> Path | None:
    """The checkpoint to resume from (`ckpt_path=PATH` or `last`), checked against this run's config. The
    classes this run's own config names are the ones its checkpoint may name."""
    if not cfg.get("ckpt_path"):
        return None
    trust = checkpoints.named_by(cfg)
    if cfg.ckpt_path == "last":
        path, checkpoint = checkpoints.load_last(cfg.paths.output_root, trust)
    else:
        path = Path(cfg.ckpt_path)
        checkpoint = checkpoints.load(path, trust)
    checkpoints.check_compatible(checkpoint, cfg.data.name, cfg.model._target_, path)
    log.info("resuming from %s (this run writes to its own directory)", path)
    return path


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """One run, leaving the process as it found it (hardware.isolated_job)."""
    with hardware.isolated_job():
        return fit_and_test(cfg, callbacks)


def weights_to_test(trainer: L.Trainer, validated_apart: bool) -> tuple[str, str | None]:
    """Which weights the run tests, and the checkpoint they are in (None: the weights in memory).

    The best epoch by val/acc, unless the test set doubles as the validation set (picking the best epoch
    on it would report a selected test score) or the weights were averaged (SWA, EMA): the average at the
    end of training is then saved as averaged.ckpt, so that the tested weights are on disk. (Lightning's
    weight averaging restores a checkpoint's raw weights, not its average, when it tests from one.)
    """
    checkpoint = trainer.checkpoint_callback
    averaging = (StochasticWeightAveraging, WeightAveraging)
    if any(isinstance(c, averaging) for c in trainer.callbacks):
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
    hardware.tune_process(trainer)
    if trainer.world_size > 1:
        launch.hand_to_ranks(run_config)
    log.info(
        "device %s · torch %s threads · output %s", device_name(trainer), torch.get_num_threads(), output_dir
    )

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    fitted = {k: trainer.callback_metrics.get(k) for k in ("val/acc_best", "train/acc", "train/loss")}
    tested_weights, test_ckpt = weights_to_test(trainer, cfg.data.val_size > 0)
    # Added for testing only: every callback costs Lightning a little on every training step.
    trainer.callbacks.append(TestDashboard(datamodule.classes))
    tested = trainer.test(
        module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False, weights_only=True
    )[0]

    record = results(
        tested,
        run_config,
        module.net,
        trainer,
        **{k: float(v) if v is not None else None for k, v in fitted.items()},
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        seconds_per_epoch=timer.mean_seconds,
        epoch_seconds=timer.epoch_seconds,
        optimizer=short_name(cfg.optimizer._target_),
        tested=tested_weights,
        batch_size=cfg.data.batch_size,
        precision_reason=precision_reason,
        output_dir=str(output_dir),
        resumed_from=str(ckpt_path.resolve()) if ckpt_path else None,
    )
    # TensorBoard's HParams tab: the settings that tell runs apart, beside the results (dashboards.Board)
    record_experiment(trainer.loggers, run_config, record)
    if trainer.is_global_zero:
        write_json(output_dir / "results.json", record)
    chance = 1 / len(datamodule.classes)
    if record["test/acc"] < 1.5 * chance:
        log.warning(
            "test/acc %.4f is chance level (%.2f): the run did not learn; try another optimizer.lr (now %s)",
            record["test/acc"],
            chance,
            cfg.optimizer.get("lr"),
        )
    seconds = f"{record['seconds_per_epoch']:.2f}" if record["seconds_per_epoch"] else "n/a"
    log.info("test/acc %.4f · %s s/epoch · results in %s", record["test/acc"], seconds, output_dir)
    return record


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Train one run. A run that fails ends the command with one error line; a failed job of a sweep
    records the error in its directory and lets the sweep go on (run_dirs.RunDirGuard counts them)."""
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    with one_line_errors(partial(record_failure, Path(cfg.paths.output_dir)) if in_sweep else None):
        return train(cfg)["val/acc_best"]
    return None


def main() -> None:
    """`python -m mnist_lab`: Hydra composes the run, except in the extra ranks of a DDP run."""
    config = launch.rank_config()
    if config is None:
        hydra_main()
        return
    cfg = OmegaConf.create(config)
    launch.log_to_rank_file(cfg.paths.output_dir)
    train(cfg)
