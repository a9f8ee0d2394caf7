"""Sweeps and multi-node DDP submitted to a real SLURM cluster, and DDP started by torchrun.

The SLURM tests need `sbatch` and a cluster that answers `sinfo` with at least 2 nodes of 1 CPU:
`scripts/local_slurm.sh up` starts one on this machine (.ci/run does). They are skipped, saying why,
where there is none.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from tests.conftest import REPO, run_cli

LIMITS = ["trainer.max_epochs=1", "trainer.limit_train_batches=10", "trainer.limit_val_batches=2"]
# each rank records the torch threads it trained with into the job's directory
# a job whose batch script exits before srun starts Python, so that it leaves no result for submitit
DIES_IN_SBATCH = ["trainer.devices=1", "hydra.launcher.setup=[exit 3]"]
THREADS = [
    "+callbacks.threads._target_=tests.test_slurm.Threads",
    "+callbacks.threads.dir=${paths.output_dir}",
]


class Threads(L.Callback):
    """Writes threads_rank<global rank>.json: torch's threads while training (after Lightning's launch)."""

    def __init__(self, dir: str) -> None:
        self.dir = Path(dir)

    def on_train_batch_end(self, trainer: L.Trainer, *_: Any) -> None:
        record = {"threads": torch.get_num_threads(), "host": os.environ.get("SLURMD_NODENAME")}
        (self.dir / f"threads_rank{trainer.global_rank}.json").write_text(json.dumps(record))


def cli_env(tmp_path: Path, real_data_root: Path) -> dict[str, str]:
    """run_cli's environment, for the commands it does not run (torchrun) or must time out."""
    return {
        **os.environ,
        "MNIST_LAB_DATA_DIR": str(real_data_root),
        "MNIST_LAB_OUTPUT_DIR": str(tmp_path / "out"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def no_cluster() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    if shutil.which("sbatch") is None:
        return "sbatch not installed (apt-get install slurm-wlm munge; then sudo scripts/local_slurm.sh up)"
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%D %c"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "no SLURM cluster answers sinfo within 20 s (sudo scripts/local_slurm.sh up starts one)"
    if sinfo.returncode != 0:
        said = (sinfo.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no SLURM cluster answers ({said}); sudo scripts/local_slurm.sh up starts one"
    nodes = sum(int(line.split()[0]) for line in sinfo.stdout.splitlines() if line.strip())
    if nodes < 2:
        return f"the SLURM cluster has {nodes} node(s); the multi-node test needs 2"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = no_cluster()
    if reason:
        pytest.skip(reason)


def mnist_lab(
    tmp_path: Path, real_data_root: Path, *args: str, ok: bool = True
) -> subprocess.CompletedProcess:
    done = run_cli(tmp_path, real_data_root, *args)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def only_dir(path: Path) -> Path:
    (entry,) = (p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    return entry


def test_a_sweep_on_slurm_writes_one_results_json_per_job(
    slurm: None, tmp_path: Path, real_data_root: Path
) -> None:
    done = mnist_lab(
        tmp_path, real_data_root, "-m", "hydra/launcher=slurm_cpu", "seed=0,1", "trainer.devices=1", *LIMITS
    )
    sweep = only_dir(tmp_path / "out" / "multiruns")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name.split(",")[0] for p in jobs] == ["seed=0", "seed=1"]
    for job in jobs:
        results = json.loads((job / "results.json").read_text())
        assert results["seed"] == int(job.name[5])
        assert results["device"] == "cpu (1 threads)", "a 1-CPU task trains with 1 torch thread"
    assert "Bypassing sacct error" not in done.stdout + done.stderr


def test_two_nodes_of_one_task_test_accuracy_equals_a_single_process_evaluation(
    slurm: None, tmp_path: Path, real_data_root: Path
) -> None:
    done = mnist_lab(
        tmp_path,
        real_data_root,
        "-m",
        "hydra/launcher=slurm_cpu",
        "trainer=ddp_cpu",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        *LIMITS,
        *THREADS,
    )
    # every rank wrote into the one job directory and nowhere else
    assert {p.name for p in tmp_path.iterdir()} == {"out"}
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"multiruns"}
    sweep = only_dir(tmp_path / "out" / "multiruns")
    job = only_dir(sweep)
    results = json.loads((job / "results.json").read_text())
    ranks = [json.loads((job / f"threads_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len({r["host"] for r in ranks}) == 2, "the ranks ran on two nodes"
    assert [r["threads"] for r in ranks] == [1, 1], "each rank trains with its 1-CPU allocation's threads"
    log = done.stdout + done.stderr + "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "sync_dist" not in log, "metrics are synchronised across the ranks"

    # quoted: the job's directory name holds the sweep's overrides (= and ,)
    evaluated = run_cli(
        tmp_path, real_data_root, f"ckpt_path='{job}/checkpoints/best.ckpt'", tool="mnist_lab.evaluate"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    single = json.loads((only_dir(tmp_path / "out" / "evaluate") / "results.json").read_text())
    assert single["test/acc"] == pytest.approx(results["test/acc"], abs=1e-6)


def test_a_job_that_fails_on_slurm_is_reported_and_the_sweep_ends(
    slurm: None, tmp_path: Path, real_data_root: Path
) -> None:
    # optimizer.lr=-1 composes, and the job rejects it on its node
    done = mnist_lab(
        tmp_path,
        real_data_root,
        "-m",
        "hydra/launcher=slurm_cpu",
        "optimizer.lr=0.001,-1",
        "trainer.devices=1",
        *LIMITS,
        ok=False,
    )
    assert done.returncode == 1
    assert "error: 1 of 2 jobs failed: optimizer.lr=-1" in done.stderr
    sweep = only_dir(tmp_path / "out" / "multiruns")
    failed = json.loads(next(sweep.glob("optimizer.lr=-1*/failed.json")).read_text())
    assert "optimizer.lr=-1" in failed["error"]
    assert len(list(sweep.glob("*/results.json"))) == 1


def test_a_job_that_dies_before_writing_a_result_ends_the_sweep(
    slurm: None, tmp_path: Path, real_data_root: Path
) -> None:
    # the batch script exits before srun starts Python: only SLURM (sacct) can tell submitit it ended
    done = subprocess.run(
        [sys.executable, "-m", "mnist_lab", "-m", "hydra/launcher=slurm_cpu", *LIMITS, *DIES_IN_SBATCH],
        cwd=tmp_path,
        env=cli_env(tmp_path, real_data_root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "has not produced any output (state: FAILED)" in done.stderr


def test_torchrun_makes_one_run_directory(tmp_path: Path, real_data_root: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "mnist_lab"]
    done = subprocess.run(
        [*command, "trainer=ddp_cpu", *LIMITS, *THREADS],
        cwd=tmp_path,
        env=cli_env(tmp_path, real_data_root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = only_dir(tmp_path / "out" / "runs")
    names = {p.name for p in run.iterdir()}
    assert {
        "results.json",
        "train.log",
        "train_rank1.log",
        "threads_rank0.json",
        "threads_rank1.json",
    } <= names
    assert [json.loads((run / f"threads_rank{r}.json").read_text())["threads"] for r in (0, 1)] == [1, 1]
