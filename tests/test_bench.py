"""The speed benchmark runs end to end (its timings are not checked: never time a test)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_lab.hardware import AVX2_KERNELS, cpu_has_native_bf16, cpu_kind
from tests.conftest import REPO


def test_bench_interleaves_the_variants_without_changing_their_arithmetic(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "benchmarks/bench.py", "--models", "mlp", "--epochs", "2"]
    # 5,000 training images keep it short; (c) tests its better epoch, the second, as (a) and (b) do
    command += ["--speedrun-seeds", "0", "--write", str(out), f"data.root={real_data_root}"]
    done = subprocess.run([*command, "data.val_size=55000"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in out.read_text().splitlines() if line.startswith("| mlp (32-true) | 32 |")]
    a, b, c = (float(acc) for acc in row.split("|")[-2].split(" / "))
    assert b == c > 0.85 and a > 0.85  # (b) and (c) take the same steps in between the others' epochs
    for variant in "abc":
        (line,) = [line for line in done.stdout.splitlines() if line.startswith(f"mlp ({variant}): ")]
        assert len(line.split(" s/epoch")[0].split()[2:]) == 2


def test_step_overhead_pairs_lightning_and_plain_steps_in_a_real_run(
    real_data_root: Path, tmp_path: Path
) -> None:
    """On the AVX2 kernels (what `make bench CPU=avx2` sets): the block names them and how to set them."""
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "benchmarks/step_overhead.py", "--steps", "20", "--write", str(out)]
    done = subprocess.run(
        [*command, f"data.root={real_data_root}"],
        cwd=REPO,
        env={**os.environ, **AVX2_KERNELS},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    caps = " ".join(f"{name}={value}" for name, value in AVX2_KERNELS.items())
    assert "(AVX2, oneDNN capped at AVX2), " in text.splitlines()[1]
    assert f"`{caps} python benchmarks/step_overhead.py --steps 20 data.root=" in text
    assert "(20 pairs of steps" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| mlp | 32 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    plain, lightning = (float(cell.removesuffix(" µs")) for cell in cells[2:4])
    assert float(cells[5]) == pytest.approx(lightning / plain, rel=5e-3)
    # the default callbacks (best and last checkpoints, LR monitor, progress bar), Lightning's model summary,
    # the epoch timer, run record and interrupt checkpoint that every run adds, and the measuring one
    assert cells[6] == "9"


def test_cnn_step_profiles_both_precisions_and_its_variants_compute_the_same(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "benchmarks/cnn_step.py", "--steps", "1", "--rounds", "1", "--write", str(out)]
    done = subprocess.run(
        [*command, "--data-root", str(real_data_root)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    # bf16 only where the CPU computes it natively (emulated, one bf16 step takes ~10 fp32 steps)
    expected = ["bf16-mixed", "32-true"] if cpu_has_native_bf16() else ["32-true"]
    assert re.findall(r"\*\*([\w-]+)\*\*: where", text) == expected
    assert f", CPU {cpu_kind()}, " in text and "aten::convolution_backward" in text
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ") and "×" in line]
    assert len(rows) == 9 * len(expected), "9 variants per precision"
    for group in (rows[i : i + 9] for i in range(0, len(rows), 9)):
        assert group[0][0].strip() == "project"
        reference = float(group[0][1])
        for name, ms, ratio, gap in group:
            assert float(gap) < 1e-4, f"{name} computes something else"
            assert float(ratio.strip().rstrip("×")) == pytest.approx(reference / float(ms), abs=0.011)


def test_handwriting_scores_other_digits_through_predicts_preparation(
    trained_checkpoint: Path, real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "benchmarks/handwriting.py", str(trained_checkpoint), "--write", str(out)]
    done = subprocess.run(
        [*command, "--data-root", str(real_data_root)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "pictures: uci 1,797, fonts 210, photos 2,007" in text
    (row,) = [line for line in text.splitlines() if line.startswith(f"| {trained_checkpoint} |")]
    mnist, *sets, pooled = (float(cell.split("%")[0]) for cell in row.strip("|").split("|")[1:])
    assert mnist > 98 and sets[1] > 80, "the speedrun reads MNIST and typed digits"
    # the cells are rounded to 0.1: the pooled one by up to 0.05, the weighted mean of the others too
    assert pooled == pytest.approx((sets[0] * 1797 + sets[1] * 210 + sets[2] * 2007) / 4014, abs=0.1)


KERAS_PYTHON = REPO / ".venv-keras" / "bin" / "python"


@pytest.mark.skipif(
    not KERAS_PYTHON.exists(), reason="no .venv-keras: `make keras-venv` sets it up (CI does)"
)
def test_vs_keras_times_the_seeds_keras_code_and_mnist_lab_per_image(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "benchmarks/vs_keras.py", f"--keras-python={KERAS_PYTHON}", "--models", "mlp"]
    command += ["--epochs", "1", "--rounds", "1", "--images", "2000", "--write", str(out)]
    done = subprocess.run(
        [*command, "--data-root", str(real_data_root)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "(Keras: tensorflow-cpu 2.21.0, keras " in text
    (row,) = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| mlp | 32 |")]
    (keras, keras_mean), (ours, ours_mean), ratios = (cell.split(" / ") for cell in row[3:6])
    # the table rounds ms/image to 3 decimals (~0.06 ms/image here): ratios agree to ~1 %
    assert float(ratios[0].strip(" *×")) == pytest.approx(float(keras) / float(ours), rel=0.02)
    assert float(ratios[1].strip(" ×")) == pytest.approx(float(keras_mean) / float(ours_mean), rel=0.02)
    assert float(ours) <= float(ours_mean) and float(keras) <= float(keras_mean)
    # each side trained: better than guessing after 2,000 images (63 steps of 32)
    keras_acc, ours_acc = (float(acc) for acc in row[6].split(" / "))
    assert keras_acc > 0.8 and ours_acc > 0.8
    for side in ("Keras (TF, fp32)", "mnist_lab"):
        assert f"mlp · {side} · round 0: " in done.stdout


def test_speedrun_variants_train_in_turns_beside_the_speedrun(real_data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    tiny = (
        f"trainer.limit_train_batches=3 trainer.limit_test_batches=2 logger=none data.root={real_data_root}"
    )
    command = [sys.executable, "benchmarks/speedrun.py", "--seeds", "2", "--overrides", tiny]
    command += ["--write", str(out), "batch 128: data.batch_size=128", "no crop: model.crop=null"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    order = [line.split(":")[0] for line in done.stdout.splitlines() if " s of training · " in line]
    names = ["speedrun", "batch 128", "no crop"]
    assert order == [f"{name} seed {seed}" for seed in (0, 1) for name in names]
    rows = [line.strip("|").split("|") for line in out.read_text().splitlines() if line.startswith("| ")][2:]
    assert [row[0].strip() for row in rows] == [
        "speedrun",
        "batch 128: `data.batch_size=128`",
        "no crop: `model.crop=null`",
    ]
    base = float(rows[0][1].split()[0])
    for row in rows:
        mean = float(row[1].split()[0])  # the table rounds seconds to 0.01, ratios to 0.01
        assert (
            (mean - 0.005) / (base + 0.005) - 0.005
            <= float(row[3])
            <= (mean + 0.005) / (base - 0.005) + 0.005
        )
        assert len(row[4].split()) == 2  # one accuracy per seed

    bad = subprocess.run([*command[:2], "no name"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "write a variant as 'NAME: OVERRIDE ...'" in bad.stderr
