"""Runs, sweeps and data that never lose work, driven through the real command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import cli_env, run_cli

SHORT = ["trainer.max_epochs=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]


def errors(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if "error:" in line]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_a_failed_sweep_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path, real_data_root: Path) -> None:
    sweep = tmp_path / "sweep"
    command = ["-m", "optimizer=sgd", "optimizer.lr=1e6,0.01", *SHORT, "trainer.limit_train_batches=60"]
    done = run_cli(tmp_path, real_data_root, *command, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "error: 1 of 2 jobs failed" in errors(done)[-1]
    (failed,) = sweep.glob("*/failed.json")
    assert "optimizer.lr=1000000.0" in failed.parent.name
    assert "Lower optimizer.lr (now 1000000.0)" in json.loads(failed.read_text())["error"]
    (finished,) = sweep.glob("*/results.json")
    assert "optimizer.lr=0.01" in finished.parent.name, "the job after the failed one ran"

    report = subprocess.run(
        [sys.executable, "-m", "mnist_lab.report", f"runs={sweep}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0 and "Failed jobs (1):" in report.stdout and "diverged" in report.stdout

    before = snapshot(sweep)
    again = run_cli(tmp_path, real_data_root, "-m", "seed=0", f"hydra.sweep.dir={sweep}")
    assert again.returncode == 1 and "already holds a sweep" in errors(again)[0]
    assert snapshot(sweep) == before, "nothing in the earlier sweep changed"


def test_a_run_dir_that_holds_a_run_is_refused_before_anything_changes(
    tmp_path: Path, real_data_root: Path
) -> None:
    run_dir = tmp_path / "run"
    first = run_cli(
        tmp_path, real_data_root, *SHORT, "trainer.limit_train_batches=5", f"hydra.run.dir={run_dir}"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(run_dir)
    again = run_cli(tmp_path, real_data_root, "model=cnn", f"hydra.run.dir={run_dir}")
    assert again.returncode == 1
    (error,) = errors(again)
    assert "already holds a run" in error and "nothing in it was changed" in error
    assert snapshot(run_dir) == before


def test_a_tool_refuses_an_output_dir_that_holds_anything(tmp_path: Path, real_data_root: Path) -> None:
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    done = run_cli(tmp_path, real_data_root, "runs=.", f"hydra.run.dir={run_dir}", tool="mnist_lab.report")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (error,) = errors(done)
    assert f"{run_dir} already holds files (notes.txt); nothing in it was changed" in error
    assert snapshot(run_dir) == {"notes.txt": b"mine"}


def test_a_damaged_dataset_is_named_as_damaged_on_every_command(
    tmp_path: Path, tiny_root: Path, trained_checkpoint: Path
) -> None:
    images = tiny_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    size = images.stat().st_size
    checkpoint = f"ckpt_path={trained_checkpoint}"
    for tool, *overrides in (
        ["mnist_lab"],
        ["mnist_lab.datasets"],
        ["mnist_lab.evaluate", checkpoint],
        ["mnist_lab.viz", checkpoint],
        ["mnist_lab.lr_find"],
    ):
        done = run_cli(tmp_path, tiny_root, f"data.root={tiny_root}", *overrides, tool=tool)
        assert done.returncode == 1, (tool, done.stderr[-2000:])
        (error,) = errors(done)
        assert "train-images-idx3-ubyte is truncated" in error and "could not be downloaded" not in error, (
            tool
        )
        assert "python -m mnist_lab.datasets" in error, "the fix is named"
        assert "Traceback" not in done.stderr, tool
    assert images.stat().st_size == size, "the damaged file is left for the user to see"


def test_a_diverging_run_stops_with_one_line_naming_the_learning_rate(
    tmp_path: Path, real_data_root: Path
) -> None:
    done = run_cli(tmp_path, real_data_root, *SHORT, "optimizer.lr=1e9", "trainer.limit_train_batches=100")
    assert done.returncode == 1
    (error,) = errors(done)
    assert "the run diverged" in error and "optimizer.lr (now 1000000000.0)" in error
    assert "Traceback" not in done.stderr


def test_a_run_that_ends_at_chance_level_says_so(tmp_path: Path, real_data_root: Path) -> None:
    done = run_cli(
        tmp_path,
        real_data_root,
        *SHORT,
        "optimizer=sgd",
        "optimizer.lr=1e-9",
        "trainer.limit_train_batches=5",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (warning,) = [line for line in (done.stdout + done.stderr).splitlines() if "chance level" in line]
    assert "optimizer.lr (now 1e-09)" in warning


def test_threads_follow_the_cpus_and_are_restored_after_a_ddp_job(
    tmp_path: Path, real_data_root: Path
) -> None:
    sweep = tmp_path / "sweep"
    command = ["-m", "trainer=ddp_cpu,default", *SHORT, "trainer.limit_train_batches=5"]
    done = run_cli(tmp_path, real_data_root, *command, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    cpus, default = len(os.sched_getaffinity(0)), torch.get_num_threads()
    devices = {
        "trainer=ddp_cpu" in path.parent.name: json.loads(path.read_text())["device"]
        for path in sweep.glob("*/results.json")
    }
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2, "one directory per job, not per DDP rank"
    (ddp_job,) = [name for name in jobs if "trainer=ddp_cpu" in name]
    assert {"results.json", "train.log", "train_rank1.log"} <= {p.name for p in (sweep / ddp_job).iterdir()}
    # the DDP job's 2 processes share the CPUs; the next job gets them all back
    assert devices == {
        True: f"cpu ({max(1, min(default, cpus // 2))} threads)",
        False: f"cpu ({min(default, cpus)} threads)",
    }


def test_each_job_of_a_sweep_leaves_the_process_as_it_found_it(tmp_path: Path, real_data_root: Path) -> None:
    """Two different jobs in one process: each changes threads, environment, glibc's allocator and cuDNN's
    flag while it runs, and the process after the sweep is the process before it. The sweep runs on one CPU
    with torch on two threads, so that a job (one thread per CPU) changes the thread count."""
    one_cpu = set(sorted(os.sched_getaffinity(0))[:1])
    env = {**cli_env(tmp_path, real_data_root), "OMP_NUM_THREADS": "2"}
    command = [
        "-m",
        "model=mlp,cnn",
        "debug=fast",
        "trainer.benchmark=true",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "hydra.sweep.subdir=${hydra.job.num}",
        "+hydra.callbacks.state._target_=tests.probe.ProcessState",
        f"+hydra.callbacks.state.path={tmp_path / 'state.json'}",
        "+callbacks.probe._target_=tests.probe.Probe",
        "+callbacks.probe.path=${paths.output_dir}/probe.json",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "mnist_lab", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, one_cpu),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    states = json.loads((tmp_path / "state.json").read_text())
    assert [when for when, _ in states] == ["sweep start", *["job start", "job end"] * 2, "sweep end"]
    before = states[0][1]
    assert before["threads"] == 2 and not before["keeping_freed_memory"] and not before["cudnn_benchmark"]
    for when, state in states[1:]:
        assert state == before, when
    in_jobs = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/probe.json"))]
    assert len(in_jobs) == 2
    for inside in in_jobs:
        assert inside["threads"] == 1 and inside["environ"]["OMP_NUM_THREADS"] == "1"
        assert inside["keeping_freed_memory"] and inside["cudnn_benchmark"]
