"""Multi-process runs: how the ranks that Lightning's DDP launcher or torchrun start get their job.

Lightning starts the extra ranks of a DDP run by running our command line again, and torchrun starts every
rank with it at once. Under `-m` that command line is the whole sweep, and Hydra would pick each rank a new
output dir, so rank 0 hands the exact resolved config of its job to the others: in an environment variable
for Lightning's launcher, in torchrun's key-value store for torchrun.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

DDP_CONFIG = "MNIST_LAB_DDP_CONFIG"  # the resolved run config, for the DDP ranks Lightning starts


def torchrun_store() -> torch.distributed.TCPStore | None:
    """The key-value store torchrun's agent keeps for its workers; None outside a multi-process torchrun."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or int(os.environ.get("WORLD_SIZE", 1)) < 2:
        return None
    return torch.distributed.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timedelta(hours=1)
    )


def torchrun_key() -> str:
    return f"mnist_lab/run_config/{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}"


def hand_to_ranks(run_config: dict[str, Any]) -> None:
    """Rank 0 of a multi-process run: give the other ranks this job's config (hardware.isolated_job
    removes the variable when the job ends)."""
    os.environ[DDP_CONFIG] = json.dumps(run_config)
    if os.environ.get("RANK") == "0" and (store := torchrun_store()) is not None:
        store.set(torchrun_key(), json.dumps(run_config))


def rank_config() -> dict[str, Any] | None:
    """The job config of a rank that rank 0 started (or torchrun started beside it); None in rank 0."""
    config = os.environ.get(DDP_CONFIG)
    if config and os.environ.get("LOCAL_RANK", "0") != "0":
        return json.loads(config)
    if os.environ.get("RANK", "0") != "0" and (store := torchrun_store()) is not None:
        return json.loads(store.get(torchrun_key()).decode())
    return None


def log_to_rank_file(output_dir: str) -> None:
    """A rank's log goes to train_rank<N>.log in its job's directory (Hydra configures rank 0's)."""
    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK", "?")
    handler = logging.FileHandler(Path(output_dir) / f"train_rank{rank}.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler, logging.StreamHandler()])
