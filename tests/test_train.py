"""End to end on the real datasets (MNIST_LAB_DATA_DIR)."""

import itertools
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from mnist_lab import checkpoints
from mnist_lab.datasets import load_split
from mnist_lab.hardware import cpu_kind, keep_freed_memory
from mnist_lab.train import train
from tests.conftest import compose_config, run_cli

RESULT_KEYS = {"test/acc", "test/loss", "val/acc_best", "epochs", "seconds_per_epoch", "params", "dataset"}
RESULT_KEYS |= {"model", "optimizer", "seed", "device", "cpu", "mflops", "versions"}


def test_cli_run_writes_its_outputs_into_its_own_dir(tmp_path: Path, real_data_root: Path) -> None:
    limits = ["trainer.max_epochs=2", "trainer.limit_train_batches=20", "trainer.limit_test_batches=2"]
    done = run_cli(tmp_path, real_data_root, "model=cnn", *limits)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results.keys() >= RESULT_KEYS
    assert (results["model"], results["optimizer"], results["epochs"], results["params"]) == (
        "cnn",
        "adadelta",
        2,
        1_199_882,
    )
    # multiply-adds of conv 1→32 on 26², conv 32→64 on 24², dense 9216→128→10, each two operations
    macs = 26 * 26 * 32 * 9 + 24 * 24 * 64 * 32 * 9 + 9216 * 128 + 128 * 10
    assert results["mflops"] == pytest.approx(2 * macs / 1e6) and results["cpu"] == cpu_kind()
    assert results["epoch_seconds"] == [pytest.approx(s) for s in results["epoch_seconds"]]
    assert len(results["epoch_seconds"]) == 2 and min(results["epoch_seconds"]) > 0
    assert results["seconds_per_epoch"] == pytest.approx(sum(results["epoch_seconds"]) / 2)
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and (
        run_dir / "checkpoints" / "best.ckpt"
    ).exists()
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert f"results in {run_dir}" in done.stderr + done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "nothing may land outside the outputs dir"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_gpu_request_without_gpu_is_one_clear_line(tmp_path: Path, real_data_root: Path) -> None:
    done = run_cli(tmp_path, real_data_root, "trainer.accelerator=gpu")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "accelerator" in errors[0].lower(), done.stderr


def test_mlp_learns_mnist_in_one_epoch(tmp_path: Path, real_data_root: Path) -> None:
    cfg = compose_config(
        f"paths.output_dir={tmp_path}", f"data.root={real_data_root}", "trainer.max_epochs=1", "logger=none"
    )
    results = train(cfg)
    assert results["test/acc"] >= 0.95
    assert results["val/acc_best"] >= 0.95

    checkpoint = tmp_path / "checkpoints" / "last.ckpt"  # one epoch: the best is the last
    stored = torch.load(checkpoint, weights_only=True)
    assert stored["config"]["model"]["hidden"] == 512
    restored = checkpoints.classifier(stored).eval()
    images, labels = load_split("mnist", str(real_data_root), train=False)
    x = (images.unsqueeze(1).float() / 255 - 0.1307) / 0.3081
    with torch.no_grad():
        accuracy = (restored(x).argmax(1) == labels).float().mean().item()
    assert accuracy == pytest.approx(results["test/acc"], abs=1e-4), "the restored model scores as tested"


PAGE_FAULTS = """
import resource, sys, torch
from mnist_lab.hardware import cpu_kind, keep_freed_memory
from mnist_lab.models import CNN

torch.manual_seed(0)
net = CNN().to(memory_format=torch.channels_last)
optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
x = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (128,))

def page_faults_per_step():
    steps, before = 4, resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps

for keep in (False, True):
    keep_freed_memory(keep)
    page_faults_per_step()
    print(page_faults_per_step())
"""


def test_a_cpu_run_keeps_freed_memory_for_the_next_step() -> None:
    """glibc's defaults return each freed activation to the system, so every step page-faults it in again.
    Measured in a fresh process: what earlier work left in a long-lived process's heap changes the count."""
    done = subprocess.run([sys.executable, "-c", PAGE_FAULTS], capture_output=True, text=True, check=True)
    glibc_defaults, kept = (float(line) for line in done.stdout.split())
    assert kept < glibc_defaults / 20, (glibc_defaults, kept)  # ~8,000 a step, then a few


def test_a_cpu_training_run_reuses_its_memory_step_after_step(tmp_path: Path, real_data_root: Path) -> None:
    """The run itself sets it: glibc starts from its defaults here, as in a fresh process."""
    keep_freed_memory(False)
    faults: list[int] = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
            if trainer.global_step >= 4:  # after the first steps' allocations
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

    cfg = compose_config(
        "model=cnn",
        "trainer.precision=32-true",
        "trainer.max_steps=13",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "logger=none",
        f"paths.output_dir={tmp_path}",
        f"data.root={real_data_root}",
    )
    train(cfg, [Probe()])
    # the median step: a one-off allocation (~1,000 faults once, after a few steps) is not step after step
    per_step = [after - before for before, after in itertools.pairwise(faults)]
    assert statistics.median(per_step) < 1000, per_step  # glibc's defaults: 8,000-37,000 faults a CNN step


def test_a_default_run_prints_no_warning(tmp_path: Path, real_data_root: Path) -> None:
    """`python -m mnist_lab` as `make train` runs it (logger, checkpoints, progress bar), shortened past one
    logging interval: its output holds no warning and no traceback (the run-dir guard resolves the default
    run dir instead of warning on every run)."""
    limits = ("trainer.max_epochs=1", "trainer.limit_train_batches=60", "trainer.limit_val_batches=2")
    done = run_cli(tmp_path, real_data_root, *limits, "trainer.limit_test_batches=2")
    assert done.returncode == 0, done.stderr[-3000:]
    noisy = [line for line in (done.stdout + done.stderr).splitlines() if "warn" in line.lower()]
    assert not noisy and "Traceback" not in done.stderr
    assert "precision 32-true (set by trainer.precision)" in done.stderr + done.stdout  # the MLP's own
