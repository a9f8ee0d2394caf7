"""DDP on 2 CPU processes (gloo), inside Hydra multiruns, and the SLURM launcher config."""

import json
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from mnist_lab.evaluate import evaluate
from tests.conftest import run_cli

LIMITS = ["trainer.max_epochs=1", "trainer.limit_train_batches=10", "trainer.limit_val_batches=2"]


def mnist_lab(tmp_path: Path, real_data_root: Path, *args: str) -> subprocess.CompletedProcess:
    done = run_cli(tmp_path, real_data_root, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_process_test_accuracy_equals_a_single_process_evaluation(
    tmp_path: Path, real_data_root: Path
) -> None:
    done = mnist_lab(tmp_path, real_data_root, "trainer=ddp_cpu", *LIMITS)
    assert "sync_dist" not in done.stdout + done.stderr, "metrics are synchronised across the ranks"
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert (run_dir / "train.log").exists() and (run_dir / "train_rank1.log").exists()
    single = evaluate(run_dir / "checkpoints" / "best.ckpt", str(real_data_root), accelerator="cpu")
    assert single["test/acc"] == pytest.approx(results["test/acc"], abs=1e-6)


def test_slurm_launcher_asks_for_one_task_per_gpu() -> None:
    with initialize_config_module("mnist_lab.conf", version_base="1.3"):
        cfg = compose(
            "config",
            ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert (cfg.trainer.strategy, cfg.trainer.accelerator) == ("ddp", "gpu")
