"""Run and sweep directories that never lose work.

A directory that already holds a run or a sweep (for a tool: any file) is refused before Hydra writes
anything into it. In a sweep (`-m`) a job that fails records why in its own directory (failed.json) and
the sweep goes on to the next job; when all have run, one line says how many failed and the command
exits 1. RunDirGuard is a Hydra callback (`hydra.callbacks` in conf/config.yaml and conf/tool.yaml), so
it also covers the launchers that run jobs elsewhere (submitit): it reads what the jobs left on disk.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_lab.files import write_json

FAILED = "failed.json"
RUN_FILES = ("results.json", FAILED, "checkpoints", ".hydra")


def record_failure(output_dir: Path, error: str) -> None:
    write_json(output_dir / FAILED, {"error": error})


class RunDirGuard(Callback):
    """`any_file=true` (the tools): any file in the directory counts as something to keep."""

    def __init__(self, any_file: bool = False) -> None:
        self.any_file = any_file

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the default run dir names the model through ${hydra:runtime.choices.model}, which resolves only
        # once HydraConfig is set; Hydra sets it just after this hook, to this same config
        HydraConfig.instance().set_config(config)
        run_dir = Path(config.hydra.run.dir)
        if self.any_file:
            held = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
            what, fix = "files", "or leave the default (a new one per call)"
        else:
            held = [name for name in RUN_FILES if (run_dir / name).exists()]
            what, fix = "a run", "or resume that run with ckpt_path=PATH"
        if held:
            sys.exit(
                f"error: {run_dir} already holds {what} ({', '.join(held[:3])}); nothing in it was changed. "
                f"Choose a new directory (hydra.run.dir=...), {fix}."
            )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if (sweep_dir / "multirun.yaml").exists():
            sys.exit(
                f"error: {sweep_dir} already holds a sweep; nothing in it was changed. "
                "Choose a new directory (hydra.sweep.dir=...)."
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = [p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")]
        failed = sorted(str(job.relative_to(sweep_dir)) for job in jobs if (job / FAILED).exists())
        if failed:
            sys.exit(
                f"error: {len(failed)} of {len(jobs)} jobs failed: {'; '.join(failed)} "
                f"(the {FAILED} in each job's directory under {sweep_dir} says why)"
            )
