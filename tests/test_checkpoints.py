"""Use what you trained: evaluate and resume from checkpoints, and the errors for bad ones."""

import os
from pathlib import Path

import pytest

from mnist_lab import checkpoints
from mnist_lab.errors import ConfigError
from mnist_lab.evaluate import evaluate
from mnist_lab.train import train
from tests.conftest import compose_config


def run(real_data_root: Path, output_dir: Path, *overrides: str) -> dict:
    cfg = compose_config(
        f"data.root={real_data_root}",
        "trainer.limit_train_batches=8",
        "trainer.limit_val_batches=2",
        "logger=none",
        "seed=3",
        f"paths.output_dir={output_dir}",
        *overrides,
    )
    return train(cfg)


@pytest.fixture(scope="module")
def runs(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, Path]]:
    root = tmp_path_factory.mktemp("runs")
    straight = run(real_data_root, root / "straight", "trainer.max_epochs=3")
    stopped = run(real_data_root, root / "stopped", "trainer.max_epochs=2")  # as if killed after epoch 2
    resumed = run(
        real_data_root,
        root / "resumed",
        "trainer.max_epochs=3",
        f"ckpt_path={root / 'stopped/checkpoints/last.ckpt'}",
    )
    return {
        "straight": (straight, root / "straight"),
        "stopped": (stopped, root / "stopped"),
        "resumed": (resumed, root / "resumed"),
    }


def test_resumed_run_ends_exactly_where_an_uninterrupted_one_does(runs: dict) -> None:
    straight, resumed = runs["straight"][0], runs["resumed"][0]
    assert resumed["epochs"] == straight["epochs"] == 3
    assert (resumed["test/acc"], resumed["test/loss"]) == (straight["test/acc"], straight["test/loss"])
    assert runs["stopped"][0]["test/loss"] != straight["test/loss"], (
        "the resumed run must have trained further"
    )


def test_evaluate_reproduces_the_runs_test_accuracy(runs: dict, real_data_root: Path) -> None:
    results, run_dir = runs["straight"]
    evaluated = evaluate(run_dir / "checkpoints" / "best.ckpt", str(real_data_root), accelerator="cpu")
    assert (evaluated["test/acc"], evaluated["test/loss"]) == (results["test/acc"], results["test/loss"])
    assert evaluated["model"] == "mlp" and evaluated["dataset"] == "mnist"


def test_ckpt_path_last_finds_the_newest_run(tmp_path: Path) -> None:
    # written newest first, and named so that neither order nor name picks the newest
    for name, mtime in (("newer", 2_000_000_000), ("older", 1_000_000_000)):
        (tmp_path / "runs" / name / "checkpoints").mkdir(parents=True)
        (tmp_path / "runs" / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
        os.utime(tmp_path / "runs" / name / "checkpoints" / "last.ckpt", (mtime, mtime))
    assert checkpoints.find_last(tmp_path).parts[-3] == "newer"
    with pytest.raises(checkpoints.CheckpointError, match=r"no runs/\*/checkpoints/last\.ckpt"):
        checkpoints.find_last(tmp_path / "empty")


def test_truncated_checkpoint_is_a_clear_error(runs: dict, tmp_path: Path) -> None:
    good = runs["straight"][1] / "checkpoints" / "last.ckpt"
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(checkpoints.CheckpointError, match=r"not a readable checkpoint.*truncated or corrupt"):
        checkpoints.load(bad)
    (tmp_path / "notes.ckpt").write_text("hello")
    with pytest.raises(checkpoints.CheckpointError, match="not a readable checkpoint"):
        checkpoints.load(tmp_path / "notes.ckpt")


def test_resuming_with_another_model_is_a_clear_error(
    runs: dict, real_data_root: Path, tmp_path: Path
) -> None:
    last = runs["straight"][1] / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"was trained on data=mnist with mnist_lab\.models\.MLP.*CNN"):
        run(real_data_root, tmp_path, "model=cnn", f"ckpt_path={last}")
