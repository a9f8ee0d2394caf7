"""Lightning's cost per optimizer step, measured step against step inside a real run.

bench.py's c/b compares whole epochs, and this shared VM's slow spells move it by several percent
between runs. Here a real `python -m mnist_lab` run (same callbacks, logger, precision and metrics)
trains as usual, and after each of its training steps a callback takes one plain step: the loop from
the PyTorch tutorials, on the same network with the same torch optimizer (so both find the same weights
in cache), batches from its own on-device loader. Lightning's step is the time from the end of one
plain step to the start of the next (batch fetch, hooks, logging, the module's training_step and
metrics, forward, backward, optimizer step); the plain step is the same arithmetic without Lightning.
A slow spell hits both alike, so the median of their paired differences is stable. The measuring
callback is one more callback than a plain run has. CPU only (the timer does not wait for a GPU).
`python benchmarks/step_overhead.py [--steps N] [--write BENCHMARKS.md] [overrides]`."""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from bench import command_line, config, header, publish
from omegaconf import DictConfig

from mnist_lab.build import short_name
from mnist_lab.data import DeviceLoader, ShardedBatches
from mnist_lab.train import train

WARM_UP = 20  # steps of each kind before timing starts


class PairedSteps(L.Callback):
    """After every Lightning training step, one timed plain step; pairs (Lightning, plain) in microseconds."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.pairs: list[tuple[float, float]] = []
        self.callbacks = 0  # in the run, this one included
        self._lightning_started: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.module = pl_module
        (self.optimizer,) = trainer.optimizers  # the torch optimizer inside Lightning's wrapper
        images, labels = trainer.datamodule.splits["train"]
        sampler = ShardedBatches(len(labels), self.cfg.data.batch_size, shuffle=True, seed=1)
        loader = DeviceLoader(images, labels, sampler, trainer.datamodule.mean, trainer.datamodule.std)
        self.batches = iter(loader)
        self.autocast = self.cfg.trainer.precision == "bf16-mixed"
        self.callbacks = len(trainer.callbacks)

    def plain_step(self) -> None:
        x, y = next(self.batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            loss = F.cross_entropy(self.module(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        lightning_ended = time.perf_counter()
        with torch.enable_grad():
            started = time.perf_counter()
            self.plain_step()
            plain = time.perf_counter() - started
        if self._lightning_started is not None and batch_idx >= WARM_UP:
            self.pairs.append((1e6 * (lightning_ended - self._lightning_started), 1e6 * plain))
        self._lightning_started = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="timed pairs of steps")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=cnn")
    args = parser.parse_args()

    cfg = config(
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={args.steps + WARM_UP}",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        *args.overrides,
    )
    paired = PairedSteps(cfg)
    with tempfile.TemporaryDirectory() as out:
        cfg.paths.output_dir = out
        train(cfg, [paired])

    lightning = statistics.median(a for a, _ in paired.pairs)
    plain = statistics.median(b for _, b in paired.pairs)
    difference = statistics.median(a - b for a, b in paired.pairs)
    command = command_line("step_overhead.py", f"--steps {args.steps}", *map(shlex.quote, args.overrides))
    cells = [
        short_name(cfg.model._target_),
        cfg.data.batch_size,
        f"{plain:.0f} µs",
        f"{lightning:.0f} µs",
        f"**{difference:.0f} µs**",
        f"{lightning / plain:.3f}",
        paired.callbacks,
    ]
    block = "\n".join(
        [
            f"{datetime.date.today()} · {header('cpu')}",
            "",
            f"`{command}` ({len(paired.pairs)} pairs of steps, medians)",
            "",
            "| model | batch | plain step | Lightning step | Lightning's cost per step (paired) | ratio "
            "| callbacks (the measuring one included) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            "| " + " | ".join(map(str, cells)) + " |",
        ]
    )
    publish(block + "\n", args.write)


if __name__ == "__main__":
    main()
