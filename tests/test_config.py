import json
import os
from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate

from mnist_lab.build import build_module, build_trainer
from mnist_lab.data import MNISTDataModule
from mnist_lab.models import MLP
from mnist_lab.train import train
from tests.conftest import REPO, compose_config, run_cli

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def options(group: str) -> list[str]:
    """A group's options, but the multi-process trainers: tests/test_ddp.py runs those as subprocesses."""
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml") if not p.stem.startswith("ddp"))


def test_default_is_the_seed_tutorial(tmp_path: Path) -> None:
    cfg = compose_config(f"paths.output_dir={tmp_path}")
    assert isinstance(build_module(cfg).net, MLP)
    assert (
        cfg.optimizer._target_ == "torch.optim.Adam"
        and cfg.optimizer.lr == 1e-3
        and cfg.optimizer.eps == 1e-7
    )
    assert (cfg.data.name, cfg.data.batch_size, cfg.trainer.max_epochs) == ("mnist", 32, 5)


def test_cnn_brings_the_keras_setup_and_the_command_line_still_wins() -> None:
    cfg = compose_config("model=cnn")
    assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.optimizer.rho) == (
        "torch.optim.Adadelta",
        1.0,
        0.95,
    )
    assert (cfg.data.batch_size, cfg.trainer.max_epochs) == (128, 12)
    cfg = compose_config("model=cnn", "optimizer=sgd", "data.batch_size=64", "trainer.max_epochs=2")
    assert (cfg.optimizer._target_, cfg.data.batch_size, cfg.trainer.max_epochs) == ("torch.optim.SGD", 64, 2)


@pytest.mark.parametrize(
    "group", ["data", "model", "optimizer", "scheduler", "trainer", "logger", "callbacks"]
)
def test_every_option_composes_and_trains(group: str, tiny_root: Path, tmp_path: Path) -> None:
    for option in options(group):
        out = tmp_path / option
        cfg = compose_config(
            f"{group}={option}",
            f"paths.output_dir={out}",
            f"data.root={tiny_root}",
            "data.val_size=20",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.accelerator=cpu",
        )
        assert isinstance(instantiate(cfg.data), MNISTDataModule)
        assert type(build_module(cfg).net).__name__ == cfg.model._target_.rsplit(".", 1)[-1]
        assert isinstance(build_trainer(cfg, []), L.Trainer)
        results = train(cfg)
        # one epoch of the tiny set's 100 training images, at most limit_train_batches=2 steps
        assert results["steps"] == min(2, -(-100 // cfg.data.batch_size)), f"{group}={option}"
        assert json.loads((out / "results.json").read_text())["test/acc"] == results["test/acc"]


def test_cpu_training_skips_nvml_checks_and_hooks_no_test_report(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both cost time on every optimizer step; the environment is restored after the run."""
    monkeypatch.setenv(NVML_CHECK, "1")
    seen = {}

    class Probe(L.Callback):
        def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            seen["nvml"] = os.environ.get(NVML_CHECK)
            seen["callbacks"] = {type(c).__name__ for c in trainer.callbacks}

        def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            seen["test callbacks"] = {type(c).__name__ for c in trainer.callbacks}

    cfg = compose_config(
        f"paths.output_dir={tmp_path}",
        f"data.root={tiny_root}",
        "data.val_size=20",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
    )
    train(cfg, [Probe()])
    assert seen["nvml"] is None and os.environ[NVML_CHECK] == "1"
    assert "TestDashboard" not in seen["callbacks"] and "TestDashboard" in seen["test callbacks"]


def test_trainer_flags_need_no_plus() -> None:
    cfg = compose_config(
        "trainer.limit_train_batches=50", "trainer.fast_dev_run=true", "trainer.precision=bf16-mixed"
    )
    assert cfg.trainer.limit_train_batches == 50


def test_every_experiment_composes() -> None:
    for experiment in options("experiment"):
        cfg = compose_config(f"experiment={experiment}")
        assert isinstance(instantiate(cfg.data), MNISTDataModule)
        assert type(build_module(cfg).net).__name__ == cfg.model._target_.rsplit(".", 1)[-1], experiment


def test_experiments_override_the_primary_config() -> None:
    assert compose_config("experiment=best_mnist").label_smoothing == 0.1
    assert compose_config("experiment=best_mnist", "label_smoothing=0.05").label_smoothing == 0.05


def test_callback_options_extend_the_defaults_and_combine() -> None:
    defaults = {"checkpoint", "last_checkpoint", "lr_monitor", "progress_bar"}
    assert set(compose_config("callbacks=early_stopping").callbacks) == defaults | {"early_stopping"}
    assert set(compose_config("callbacks=[early_stopping,swa]").callbacks) == defaults | {
        "early_stopping",
        "swa",
    }


def test_debug_presets_check_a_change_in_seconds(tmp_path: Path, real_data_root: Path) -> None:
    """debug=fast runs every stage on a few batches; debug=overfit drives one training batch to perfect
    accuracy and a small loss, which a broken model or optimizer cannot."""
    fast = run_cli(tmp_path, real_data_root, "debug=fast", "hydra.run.dir=fast")
    assert fast.returncode == 0, fast.stderr[-3000:]
    results = json.loads((tmp_path / "fast" / "results.json").read_text())
    assert results["steps"] == 5 and not list((tmp_path / "fast").glob("events.out.tfevents.*"))

    overfit = run_cli(tmp_path, real_data_root, "debug=overfit", "hydra.run.dir=overfit")
    assert overfit.returncode == 0, overfit.stderr[-3000:]
    results = json.loads((tmp_path / "overfit" / "results.json").read_text())
    assert results["steps"] == 60 and results["train/acc"] == 1.0 and results["train/loss"] < 0.05
