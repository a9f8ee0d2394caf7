"""Lightning's contract: the Trainer flags, schedulers, callback options and the LR finder, each driven
through the real command line and checked by its effect (the probe callback, checkpoints, event files)."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import run_cli

PROBE = [
    "+callbacks.probe._target_=tests.probe.Probe",
    "+callbacks.probe.path=${paths.output_dir}/probe.json",
]
ONE_EVAL_BATCH = ["trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
SHORT = ["trainer.max_epochs=1", *ONE_EVAL_BATCH]


@dataclass
class Run:
    dir: Path
    output: str
    results: dict[str, Any]
    probe: dict[str, Any]

    def checkpoint(self, name: str = "last.ckpt") -> dict[str, Any]:
        return torch.load(self.dir / "checkpoints" / name, weights_only=True)

    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        events = EventAccumulator(str(self.dir), size_guidance={"scalars": 0})
        events.Reload()
        return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def mnist_lab(tmp_path: Path, real_data_root: Path, *overrides: str) -> Run:
    done = run_cli(tmp_path, real_data_root, *PROBE, *overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    return Run(
        run_dir,
        done.stdout + done.stderr,
        json.loads((run_dir / "results.json").read_text()),
        json.loads((run_dir / "probe.json").read_text()),
    )


def test_limit_batches_count_optimizer_steps(tmp_path: Path, real_data_root: Path) -> None:
    run = mnist_lab(
        tmp_path,
        real_data_root,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=7",
        "trainer.limit_val_batches=3",
        "trainer.limit_test_batches=2",
    )
    assert run.checkpoint()["global_step"] == run.results["steps"] == run.probe["train_batches"] == 7
    assert run.probe["val_batches"] == [3] and run.probe["test_batches"] == 2
    # Lightning's defaults, which the next tests change
    assert run.probe["sanity_batches"] == 2
    assert run.probe["deterministic"] is False and run.probe["cudnn_benchmark"] is False
    assert run.probe["logits_dtype"] == "torch.float32"


def test_accumulate_grad_batches_steps_every_second_batch(tmp_path: Path, real_data_root: Path) -> None:
    run = mnist_lab(
        tmp_path, real_data_root, *SHORT, "trainer.accumulate_grad_batches=2", "trainer.limit_train_batches=8"
    )
    assert run.checkpoint()["global_step"] == 4
    assert [norm > 0 for norm in run.probe["update_norm"]] == [False, True] * 4


def test_max_steps_ends_the_run_and_sizes_the_one_cycle_schedule(
    tmp_path: Path, real_data_root: Path
) -> None:
    run = mnist_lab(
        tmp_path,
        real_data_root,
        "trainer.max_epochs=-1",
        "trainer.max_steps=20",
        "scheduler=onecycle",
        *ONE_EVAL_BATCH,
    )
    assert run.results["steps"] == run.probe["train_batches"] == 20
    checkpoint = run.checkpoint()
    assert checkpoint["global_step"] == 20
    assert checkpoint["lr_schedulers"][0]["total_steps"] == 20
    # annealed below where the cycle starts (max_lr / 25): a longer schedule would still be warming up
    assert checkpoint["lr_schedulers"][0]["_last_lr"][0] < 1e-3 / 25


@pytest.mark.parametrize(
    ("clip", "bound"),
    [
        (["trainer.gradient_clip_val=0.01"], ("update_norm", 0.1 * 0.01)),
        (
            ["trainer.gradient_clip_val=0.001", "trainer.gradient_clip_algorithm=value"],
            ("update_max", 0.1 * 0.001),
        ),
        ([], None),
    ],
    ids=["norm", "value", "none"],
)
def test_gradient_clipping_bounds_every_update(
    tmp_path: Path, real_data_root: Path, clip: list[str], bound: tuple[str, float] | None
) -> None:
    """Plain SGD moves the weights by lr × gradient, so a clipped gradient bounds every step's change."""
    sgd = ["optimizer=sgd", "optimizer.lr=0.1", "trainer.limit_train_batches=5"]
    run = mnist_lab(tmp_path, real_data_root, *SHORT, *sgd, *clip)
    if bound is None:  # without clipping the same steps move further than either bound
        assert min(run.probe["update_norm"]) > 0.1 * 0.01 and min(run.probe["update_max"]) > 0.1 * 0.001
    else:
        key, limit = bound
        assert max(run.probe[key]) <= limit * (1 + 1e-4)


@pytest.mark.parametrize(
    ("flags", "validations"),
    [
        (["trainer.val_check_interval=0.5", "trainer.limit_train_batches=10", "trainer.max_epochs=1"], 2),
        (["trainer.check_val_every_n_epoch=2", "trainer.limit_train_batches=3", "trainer.max_epochs=4"], 2),
    ],
    ids=["val_check_interval", "check_val_every_n_epoch"],
)
def test_validation_schedule_flags(
    tmp_path: Path, real_data_root: Path, flags: list[str], validations: int
) -> None:
    run = mnist_lab(tmp_path, real_data_root, "trainer.limit_val_batches=1", *flags)
    assert len(run.probe["val_batches"]) == validations


def test_log_every_n_steps_puts_every_scalar_on_the_optimizer_step_axis(
    tmp_path: Path, real_data_root: Path
) -> None:
    run = mnist_lab(
        tmp_path, real_data_root, *SHORT, "trainer.log_every_n_steps=5", "trainer.limit_train_batches=20"
    )
    scalars = run.scalars()
    assert [step for step, _ in scalars["train/loss_step"]] == [4, 9, 14, 19]
    assert [step for step, _ in scalars["lr-Adam"]] == [4, 9, 14, 19]
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best"):
        assert [step for step, _ in scalars[tag]] == [19], tag  # once per epoch, at its last step
    assert scalars["test/acc"][0][1] == pytest.approx(run.results["test/acc"])


def test_precision_flag_runs_the_network_in_bf16(tmp_path: Path, real_data_root: Path) -> None:
    run = mnist_lab(
        tmp_path, real_data_root, *SHORT, "trainer.limit_train_batches=3", "trainer.precision=bf16-mixed"
    )
    assert run.probe["logits_dtype"] == "torch.bfloat16" and run.results["precision"] == "bf16-mixed"


def test_deterministic_benchmark_and_sanity_steps_flags(tmp_path: Path, real_data_root: Path) -> None:
    flags = ["trainer.deterministic=true", "trainer.benchmark=true", "trainer.num_sanity_val_steps=0"]
    run = mnist_lab(tmp_path, real_data_root, *SHORT, "trainer.limit_train_batches=3", *flags)
    assert run.probe["deterministic"] is True and run.probe["cudnn_benchmark"] is True
    assert run.probe["sanity_batches"] == 0


def test_profiler_flag_prints_lightnings_report(tmp_path: Path, real_data_root: Path) -> None:
    run = mnist_lab(
        tmp_path, real_data_root, *SHORT, "trainer.limit_train_batches=3", "trainer.profiler=simple"
    )
    assert "FIT Profiler Report" in run.output
    assert re.search(r"run_training_batch\s*\|", run.output)


def test_fast_dev_run_takes_one_batch_of_each_and_selects_no_best_epoch(
    tmp_path: Path, real_data_root: Path
) -> None:
    run = mnist_lab(tmp_path, real_data_root, "trainer.fast_dev_run=true")
    assert run.results["steps"] == run.probe["train_batches"] == 1
    assert run.probe["val_batches"] == [1] and run.probe["test_batches"] == 1
    assert run.results["tested"] == "last" and not (run.dir / "checkpoints" / "best.ckpt").exists()


def test_plateau_scheduler_lowers_the_learning_rate(tmp_path: Path, real_data_root: Path) -> None:
    """threshold=1 asks for a 100 % fall of val/loss: no epoch improves, so every epoch halves the lr."""
    run = mnist_lab(
        tmp_path,
        real_data_root,
        "scheduler=plateau",
        "scheduler.scheduler.patience=0",
        "scheduler.scheduler.threshold=1.0",
        "trainer.log_every_n_steps=1",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=5",
        *ONE_EVAL_BATCH,
    )
    lrs = [lr for _, lr in run.scalars()["lr-Adam"]]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-3 * 0.5**2)


def test_early_stopping_option_stops_the_run(tmp_path: Path, real_data_root: Path) -> None:
    """min_delta=10 asks for a fall of val/loss by 10: after the first validation none improves."""
    run = mnist_lab(
        tmp_path,
        real_data_root,
        "callbacks=early_stopping",
        "callbacks.early_stopping.patience=1",
        "callbacks.early_stopping.min_delta=10",
        "trainer.max_epochs=10",
        "trainer.limit_train_batches=3",
        *ONE_EVAL_BATCH,
    )
    assert run.results["epochs"] == 2 and len(run.probe["val_batches"]) == 2


def test_swa_option_tests_the_average_of_the_last_epochs(tmp_path: Path, real_data_root: Path) -> None:
    run = mnist_lab(
        tmp_path,
        real_data_root,
        "callbacks=swa",
        "callbacks.swa.swa_epoch_start=3",  # Lightning counts it from 1: epochs 3 and 4 of 4
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=5",
        *ONE_EVAL_BATCH,
    )
    assert run.results["tested"] == "averaged"
    averaged, last = run.checkpoint("averaged.ckpt"), run.checkpoint()
    (swa_state,) = [v for k, v in averaged["callbacks"].items() if k.startswith("StochasticWeightAveraging")]
    assert int(swa_state["n_averaged"]) == 2
    weight = "net.1.weight"
    assert not torch.equal(averaged["state_dict"][weight], last["state_dict"][weight])
    assert torch.equal(averaged["state_dict"][weight], swa_state["average_model_state"][weight])


def test_lr_finder_prints_the_override_to_use(tmp_path: Path, real_data_root: Path) -> None:
    done = run_cli(tmp_path, real_data_root, "trainer.enable_progress_bar=false", tool="mnist_lab.lr_find")
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("suggested: optimizer.lr=")]
    assert 1e-4 <= float(line.split("=")[1]) <= 1e-2  # Adam on the MLP: Keras' 1e-3 is in that range
    (run_dir,) = (tmp_path / "out" / "lr_find").iterdir()
    assert (run_dir / "lr_find.png").exists()
    assert not list(run_dir.glob("*.ckpt")), "the range test's temporary checkpoint is removed"


def test_ema_option_tests_the_moving_average(tmp_path: Path, real_data_root: Path) -> None:
    """Lightning's weight averaging restores a checkpoint's raw weights when it tests from one: the run
    tests the average it saves as averaged.ckpt instead."""
    run = mnist_lab(
        tmp_path,
        real_data_root,
        "callbacks=ema",
        "callbacks.ema.decay=0.5",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        *ONE_EVAL_BATCH,
    )
    assert run.results["tested"] == "averaged"
    averaged, last = run.checkpoint("averaged.ckpt"), run.checkpoint()
    weight = "net.1.weight"
    assert torch.equal(averaged["state_dict"][weight], last["state_dict"][weight])
    assert not torch.equal(averaged["state_dict"][weight], last["current_model_state"][weight])
