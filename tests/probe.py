"""Callbacks that record what a run did, for tests that drive `python -m mnist_lab` as a user does.

Added from the command line as a user adds any callback: Lightning's
`+callbacks.probe._target_=tests.probe.Probe '+callbacks.probe.path=${paths.output_dir}/probe.json'`,
Hydra's `+hydra.callbacks.state._target_=tests.probe.ProcessState +hydra.callbacks.state.path=FILE`.
"""

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.experimental.callback import Callback
from torch import Tensor

from mnist_lab import hardware


def process_state() -> dict[str, Any]:
    """What a job may change process-wide (hardware.isolated_job restores it)."""
    return {
        "environ": dict(os.environ),
        "threads": torch.get_num_threads(),
        "keeping_freed_memory": hardware._keeping_freed_memory,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def flat_parameters(module: torch.nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


class Probe(L.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.record: dict[str, Any] = {
            "train_batches": 0,
            "sanity_batches": 0,
            "val_batches": [],  # per validation run
            "test_batches": 0,
            "update_norm": [],  # per training batch: L2 norm and largest entry of the weights' change
            "update_max": [],
        }

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record["deterministic"] = torch.are_deterministic_algorithms_enabled()
        self.record.update(process_state())
        pl_module.net[-1].register_forward_hook(self._record_dtype)

    def _record_dtype(self, layer: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if layer.training:  # a training step's (test time also traces the graph, in float32)
            self.record["logits_dtype"] = str(output.dtype)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        self._before = flat_parameters(pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        change = flat_parameters(pl_module) - self._before
        self.record["train_batches"] += 1
        self.record["update_norm"].append(change.norm().item())
        self.record["update_max"].append(change.abs().max().item())

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.record["val_batches"].append(0)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        if trainer.sanity_checking:
            self.record["sanity_batches"] += 1
        else:
            self.record["val_batches"][-1] += 1

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        self.record["test_batches"] += 1

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.path.write_text(json.dumps(self.record))


class ProcessState(Callback):
    """The process state before a sweep, at each job's start and end, and after the sweep."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.states: list[tuple[str, dict[str, Any]]] = []

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.states.append(("sweep start", process_state()))

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self.states.append(("job start", process_state()))

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        self.states.append(("job end", process_state()))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self.states.append(("sweep end", process_state()))
        self.path.write_text(json.dumps(self.states))
