"""The precision a run takes by default follows the hardware rule, on every kind of machine.

The branches this machine does not have (native bf16 or not, CUDA with and without bf16, Apple MPS) are
faked at the capability checks; one real run checks the branch of the CPU at hand.
"""

import json
import logging
import subprocess
from pathlib import Path

import pytest
import torch
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

from mnist_lab import hardware
from mnist_lab.build import check_config
from mnist_lab.errors import ConfigError
from mnist_lab.train import train
from tests.conftest import REPO, compose_config, run_cli


def fake(
    monkeypatch: pytest.MonkeyPatch,
    *,
    cpu_bf16: bool = False,
    cuda: bool = False,
    cuda_bf16: bool = False,
    mps: bool = False,
    macos14: bool = False,
) -> None:
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: cpu_bf16)
    monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: cuda))
    monkeypatch.setattr(MPSAccelerator, "is_available", staticmethod(lambda: mps))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda *a: macos14)


@pytest.mark.parametrize(
    ("machine", "accelerator", "expected"),
    [
        ({}, "auto", "32-true"),
        ({"cpu_bf16": True}, "auto", "bf16-mixed"),
        ({"cpu_bf16": True, "cuda": True}, "cpu", "bf16-mixed"),
        ({"cuda": True, "cuda_bf16": True}, "auto", "bf16-mixed"),
        ({"cuda": True}, "gpu", "16-mixed"),
        ({"mps": True, "macos14": True}, "gpu", "bf16-mixed"),
        ({"mps": True}, "auto", "16-mixed"),
        ({"mps": True}, "cpu", "32-true"),
    ],
)
def test_auto_precision_follows_the_device(
    monkeypatch: pytest.MonkeyPatch, machine: dict, accelerator: str, expected: str
) -> None:
    fake(monkeypatch, **machine)
    precision, why = hardware.choose_precision("auto", accelerator)
    assert precision == expected and why.startswith("auto: ")


def test_an_explicit_precision_wins_and_emulated_bf16_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake(monkeypatch, cpu_bf16=True)
    with caplog.at_level(logging.WARNING, logger="mnist_lab"):
        assert hardware.choose_precision("32-true", "cpu") == ("32-true", "set by trainer.precision")
        assert hardware.choose_precision("bf16-mixed", "cpu")[0] == "bf16-mixed"
    assert not caplog.records  # native bf16: nothing to warn about
    fake(monkeypatch, cpu_bf16=False)
    with caplog.at_level(logging.WARNING, logger="mnist_lab"):
        assert hardware.choose_precision("bf16-mixed", "cpu")[0] == "bf16-mixed"
    (record,) = caplog.records
    assert "without native bf16" in record.message and "slower than fp32" in record.message
    assert "trainer.precision=auto (the default) picks 32-true" in record.message


def test_a_trained_networks_precision_is_replayed_unless_this_cpu_would_emulate_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake(monkeypatch, cpu_bf16=False)
    assert hardware.replay_precision("bf16-mixed", "cpu")[0] == "32-true"
    assert hardware.replay_precision("16-mixed", "cpu")[0] == "16-mixed"
    fake(monkeypatch, cpu_bf16=True)
    assert hardware.replay_precision("bf16-mixed", "cpu") == ("bf16-mixed", "the run's")


def test_a_macs_gpu_is_accepted_where_lightning_accepts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake(monkeypatch, mps=True)
    check_config(compose_config("trainer.accelerator=gpu"))
    check_config(compose_config("trainer.accelerator=mps"))
    fake(monkeypatch)
    with pytest.raises(
        ConfigError, match=r"trainer.accelerator=gpu but torch sees no GPU \(CUDA or Apple MPS\)"
    ):
        check_config(compose_config("trainer.accelerator=gpu"))


def test_the_other_cpu_kinds_branch_trains_in_its_precision(
    monkeypatch: pytest.MonkeyPatch, tiny_root: Path, tmp_path: Path
) -> None:
    """The branch this CPU does not have, faked, in a real (tiny) training run."""
    other = not hardware.cpu_has_native_bf16()
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: other)
    cfg = compose_config(
        "model=convnet",
        "model.widths=[4,8]",
        f"data.root={tiny_root}",
        "data.val_size=20",
        "trainer.max_epochs=1",
        "logger=none",
        f"paths.output_dir={tmp_path}",
    )
    results = train(cfg)
    assert results["precision"] == ("bf16-mixed" if other else "32-true")
    assert results["precision_reason"].startswith(
        "auto: this CPU has" + (" native" if other else " no native")
    )


@pytest.mark.parametrize("isa_cap", ["AVX512_CORE_AMX", "avx2", "AVX512_CORE"])
def test_a_onednn_capped_below_bf16_counts_as_a_cpu_without_it(
    monkeypatch: pytest.MonkeyPatch, isa_cap: str
) -> None:
    """ONEDNN_MAX_CPU_ISA keeps oneDNN off the bf16 instructions (how BENCHMARKS.md runs an AVX-512 CPU as
    an AVX2 one): bf16 is then emulated, and the rule must see a CPU without it."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):  # `make test CPU=avx2` sets the first
        monkeypatch.delenv(name, raising=False)
    has_bf16 = hardware.cpu_has_native_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa_cap)
    capped = isa_cap.upper() != "AVX512_CORE_AMX"
    assert hardware.cpu_has_native_bf16() == (has_bf16 and not capped)
    assert hardware.cpu_kind().endswith(f", oneDNN capped at {isa_cap.upper()}") == capped
    expected = "bf16-mixed" if has_bf16 and not capped else "32-true"
    assert hardware.choose_precision("auto", "cpu")[0] == expected


def test_make_cpu_names_the_kind_and_cpu_avx2_runs_as_an_avx2_only_cpu() -> None:
    """`make cpu` as README gives it, with CPU=avx2 (the AVX2 kernels, on any x86 CPU) and a wrong kind."""
    done = subprocess.run(["make", "-s", "cpu", "CPU=avx2"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "CPU: AVX2, oneDNN capped at AVX2;" in done.stdout
    assert "trainer.precision=auto on the CPU: 32-true" in done.stdout
    wrong = subprocess.run(["make", "-s", "cpu", "CPU=avx3"], cwd=REPO, capture_output=True, text=True)
    assert wrong.returncode != 0 and "the one CPU kind to emulate is CPU=avx2" in wrong.stderr


@pytest.mark.parametrize("isa_cap", [None, "AVX2"])
def test_the_cnns_default_precision_is_the_hardwares(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_data_root: Path, isa_cap: str | None
) -> None:
    """`python -m mnist_lab model=cnn` as a user runs it: the precision follows this CPU's rule, as it is
    and with oneDNN capped at AVX2 (on an AVX2-only CPU both runs take the same branch)."""
    if isa_cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa_cap)
    done = run_cli(
        tmp_path,
        real_data_root,
        "model=cnn",
        "trainer.max_steps=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "hydra.run.dir=run",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected, why = hardware.auto_precision("cpu")
    assert expected == "32-true" or not isa_cap
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["precision"] == expected and results["precision_reason"] == f"auto: {why}"
    assert f"precision {expected} (auto: {why})" in done.stderr + done.stdout
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["config"]["trainer"]["precision"] == expected  # what ran, not "auto"
