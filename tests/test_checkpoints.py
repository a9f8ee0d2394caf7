"""Use what you trained, through the commands: evaluate, resume (a path or `last`), SIGTERM, SIGKILL while
a checkpoint is written, and the errors for bad checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnist_lab import checkpoints
from mnist_lab.datasets import load_split
from tests.conftest import cli_env, run_cli, write_idx

RUNS = ("straight", "stopped", "resumed")
SHORT = ("trainer.limit_train_batches=8", "trainer.limit_val_batches=2", "logger=none", "seed=3")


def train(tmp_path: Path, root: Path, run_dir: Path | None, *overrides: str) -> dict:
    where = [f"hydra.run.dir={run_dir}"] if run_dir else []
    done = run_cli(tmp_path, root, *SHORT, *where, *overrides)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(Path(done.stdout.split("results in ")[-1].split()[0], "results.json").read_text())


def files(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*")}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.fixture(scope="module")
def runs(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """A 3-epoch run, a 2-epoch run (as if killed after epoch 2, in the default runs/ dir) and the
    2-epoch run resumed by `ckpt_path=last` to 3 epochs. Their best.ckpt is the epoch with the lowest
    val/acc, the first one: a best epoch from before the resume that the resumed run must keep."""
    tmp = tmp_path_factory.mktemp("runs")
    worst = "callbacks.checkpoint.mode=min"
    straight = train(tmp, real_data_root, tmp / "straight", "trainer.max_epochs=3", worst)
    stopped = train(tmp, real_data_root, None, "trainer.max_epochs=2", worst)
    before = files(Path(stopped["output_dir"]))
    resumed = train(tmp, real_data_root, tmp / "resumed", "trainer.max_epochs=3", "ckpt_path=last", worst)
    return {
        "straight": straight,
        "stopped": stopped,
        "resumed": resumed,
        "stopped_files": (before, files(Path(stopped["output_dir"]))),
    }


def test_resume_by_last_continues_in_a_new_run_dir_and_ends_where_a_straight_run_does(runs: dict) -> None:
    straight, stopped, resumed = runs["straight"], runs["stopped"], runs["resumed"]
    assert resumed["resumed_from"] == str(Path(stopped["output_dir"], "checkpoints", "last.ckpt").resolve())
    assert resumed["epochs"] == straight["epochs"] == 3 and resumed["steps"] == straight["steps"] == 24
    last = {name: weights(Path(runs[name]["output_dir"], "checkpoints", "last.ckpt")) for name in RUNS}
    assert same(last["resumed"], last["straight"]) and not same(last["stopped"], last["straight"])
    before, after = runs["stopped_files"]
    assert after == before, "the resumed run changed the run it resumed"


def test_resumed_run_keeps_the_best_checkpoint_of_the_whole_training(runs: dict) -> None:
    straight = torch.load(Path(runs["straight"]["output_dir"], "checkpoints", "best.ckpt"), weights_only=True)
    resumed = torch.load(Path(runs["resumed"]["output_dir"], "checkpoints", "best.ckpt"), weights_only=True)
    assert straight["epoch"] < 2, "the best epoch must come before the resume for this test to mean anything"
    assert resumed["epoch"] == straight["epoch"]
    assert same(resumed["state_dict"], straight["state_dict"])
    assert (runs["resumed"]["test/acc"], runs["resumed"]["test/loss"]) == (
        runs["straight"]["test/acc"],
        runs["straight"]["test/loss"],
    )


def test_evaluate_command_reproduces_the_runs_test_accuracy(
    runs: dict, real_data_root: Path, tmp_path: Path
) -> None:
    run = runs["straight"]
    best = Path(run["output_dir"], "checkpoints", "best.ckpt")
    done = run_cli(tmp_path, real_data_root, f"ckpt_path={best}", tool="mnist_lab.evaluate")
    assert done.returncode == 0, done.stderr
    assert f"test/acc {run['test/acc']:.4f} · test/loss {run['test/loss']:.4f}" in done.stdout
    (written,) = (tmp_path / "out" / "evaluate").glob("*/results.json")
    evaluated = json.loads(written.read_text())
    assert (evaluated["test/acc"], evaluated["test/loss"]) == (run["test/acc"], run["test/loss"])
    assert evaluated["model"] == "mlp" and evaluated["device"].startswith("cpu")


def test_a_checkpoint_from_before_the_augment_group_still_evaluates(
    runs: dict, real_data_root: Path, tmp_path: Path
) -> None:
    best = Path(runs["straight"]["output_dir"], "checkpoints", "best.ckpt")
    older = torch.load(best, weights_only=True)
    older["config"]["data"] |= {"augment": True, "hflip": False}  # how data.augment was stored before
    torch.save(older, tmp_path / "older.ckpt")
    done = run_cli(
        tmp_path, real_data_root, f"ckpt_path={tmp_path / 'older.ckpt'}", tool="mnist_lab.evaluate"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"test/acc {runs['straight']['test/acc']:.4f}" in done.stdout


def test_validating_on_the_test_set_tests_the_last_weights(real_data_root: Path, tmp_path: Path) -> None:
    run = train(tmp_path, real_data_root, tmp_path / "run", "data.val_size=0", "trainer.max_epochs=2")
    assert run["tested"] == "last"
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    done = run_cli(tmp_path, real_data_root, f"ckpt_path={last}", tool="mnist_lab.evaluate")
    assert f"test/acc {run['test/acc']:.4f} · test/loss {run['test/loss']:.4f}" in done.stdout, done.stderr


def test_sigterm_saves_interrupted_ckpt_that_resumes(real_data_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "mnist_lab",
        *SHORT,
        f"hydra.run.dir={run_dir}",
        "trainer.max_epochs=1000",
    ]
    with open(tmp_path / "output.txt", "w") as out:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=cli_env(tmp_path, real_data_root), stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    output = (tmp_path / "output.txt").read_text()
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    assert process.returncode == 1 and "error: stopped by SIGTERM" in output, output[-2000:]
    assert f"interrupted: saved {interrupted}" in output
    epochs = checkpoints.load(interrupted)["epoch"]
    resumed = train(
        tmp_path,
        real_data_root,
        tmp_path / "resumed",
        f"ckpt_path={interrupted}",
        f"trainer.max_epochs={epochs + 2}",
    )
    assert resumed["epochs"] == epochs + 2 and resumed["resumed_from"] == str(interrupted.resolve())


def test_ckpt_path_last_takes_the_newest_whole_checkpoint(runs: dict, tmp_path: Path) -> None:
    whole = Path(runs["straight"]["output_dir"], "checkpoints", "last.ckpt").read_bytes()
    # named so that neither order nor name picks the newest; the newest of all was cut off mid-write
    for name, mtime, data in (
        ("cut", 3_000_000_000, whole[: len(whole) // 2]),
        ("newer", 2_000_000_000, whole),
        ("older", 1_000_000_000, whole),
    ):
        path = tmp_path / "runs" / name / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
    path, checkpoint = checkpoints.load_last(tmp_path)
    assert path.parts[-3] == "newer" and checkpoint["epoch"] == 2
    with pytest.raises(checkpoints.CheckpointError, match=r"no whole runs/\*/checkpoints/last\.ckpt"):
        checkpoints.load_last(tmp_path / "empty")


# `python -m mnist_lab`, except that the second write of last.ckpt stops halfway through (the file it
# writes holds half the checkpoint, on disk) until the process is killed
HALF_WRITTEN_LAST = """
import io, os, runpy, sys, time
from pathlib import Path
from mnist_lab import files

atomic = files.write_atomically

def write_atomically(path, write):
    if Path(path).name != "last.ckpt" or not Path(path).exists():
        return atomic(path, write)

    def half(f):
        whole = io.BytesIO()
        write(whole)
        f.write(whole.getvalue()[: len(whole.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        Path(marker).touch()
        time.sleep(600)

    atomic(path, half)

files.write_atomically = write_atomically
marker, *overrides = sys.argv[1:]
sys.argv = ["mnist_lab", *overrides]
runpy.run_module("mnist_lab", run_name="__main__")
"""


def test_a_run_killed_while_writing_a_checkpoint_resumes_from_a_whole_one(
    real_data_root: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "writing"
    command = [sys.executable, "-c", HALF_WRITTEN_LAST, str(marker), *SHORT, "trainer.max_epochs=3"]
    with open(tmp_path / "output.txt", "w") as out:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=cli_env(tmp_path, real_data_root), stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        process.kill()
        process.wait()
    assert marker.exists(), (tmp_path / "output.txt").read_text()[-2000:]
    (killed,) = (tmp_path / "out" / "runs").iterdir()
    (half,) = (killed / "checkpoints").glob(".last.ckpt.*.part")
    last = killed / "checkpoints" / "last.ckpt"
    assert 0 < half.stat().st_size < last.stat().st_size
    assert checkpoints.load(last)["epoch"] == 0, "the previous last.ckpt, whole"

    resumed = train(tmp_path, real_data_root, None, "ckpt_path=last", "trainer.max_epochs=3")
    assert resumed["resumed_from"] == str(last.resolve()) and resumed["epochs"] == 3


def test_bad_checkpoints_are_one_clear_error_line(runs: dict, real_data_root: Path, tmp_path: Path) -> None:
    last = Path(runs["straight"]["output_dir"], "checkpoints", "last.ckpt")
    truncated = tmp_path / "last.ckpt"
    truncated.write_bytes(last.read_bytes()[:5000])
    cases = {
        ("mnist_lab.evaluate", f"ckpt_path={truncated}"): "not a readable checkpoint",
        ("mnist_lab", f"ckpt_path={truncated}"): "truncated or corrupt",
        (
            "mnist_lab",
            f"ckpt_path={last}",
            "model=cnn",
        ): "was trained on data=mnist with mnist_lab.models.MLP",
        ("mnist_lab", f"ckpt_path={tmp_path / 'none.ckpt'}"): "no checkpoint at",
    }
    for (tool, *overrides), expected in cases.items():
        done = run_cli(tmp_path, real_data_root, *overrides, tool=tool)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 1 and len(errors) == 1 and expected in errors[0], done.stderr[-2000:]
        assert "Traceback" not in done.stderr


def test_evaluate_averages_an_ensemble_and_test_time_views(
    runs: dict, real_data_root: Path, tmp_path: Path
) -> None:
    """Two copies of one checkpoint score as that checkpoint; two different ones as their averaged
    probabilities; under tta=flip, a mirrored test set scores as the test set."""
    best, other = (
        Path(runs[name]["output_dir"], "checkpoints", "best.ckpt") for name in ("straight", "stopped")
    )

    def evaluate(*overrides: str, root: Path = real_data_root) -> dict:
        done = run_cli(tmp_path, root, *overrides, tool="mnist_lab.evaluate")
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(Path(done.stdout.split("results in ")[-1].split()[0]).read_text())

    twice = evaluate(f"ckpt_path=[{best},{best}]")
    assert twice["test/acc"] == runs["straight"]["test/acc"] and twice["model"] == "ensemble"
    assert twice["test/loss"] == pytest.approx(runs["straight"]["test/loss"], abs=1e-5)

    images, labels = load_split("mnist", str(real_data_root), train=False)
    x = (images.unsqueeze(1).float() / 255 - 0.1307) / 0.3081
    with torch.no_grad():
        probs = sum(checkpoints.network(checkpoints.load(p))(x).softmax(-1) for p in (best, other))
    pair = evaluate(f"ckpt_path=[{best},{other}]")
    assert pair["test/acc"] == pytest.approx((probs.argmax(1) == labels).float().mean().item(), abs=1e-4)
    assert pair["checkpoint"] == [str(best.resolve()), str(other.resolve())]

    mirrored = tmp_path / "mirrored"
    for path in (real_data_root / "MNIST" / "raw").glob("*-ubyte"):
        (mirrored / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        (mirrored / "MNIST" / "raw" / path.name).symlink_to(path)
    (mirrored / "MNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    write_idx(mirrored / "MNIST" / "raw" / "t10k-images-idx3-ubyte", images.flip(-1).numpy())
    flipped = evaluate(f"ckpt_path={best}", "tta=flip")
    assert flipped["tta"] == "flip" and abs(flipped["test/loss"] - runs["straight"]["test/loss"]) > 1e-3
    assert evaluate(f"ckpt_path={best}", "tta=flip", root=mirrored)["test/acc"] == flipped["test/acc"]
    assert evaluate(f"ckpt_path={best}", root=mirrored)["test/acc"] < runs["straight"]["test/acc"] - 0.05
