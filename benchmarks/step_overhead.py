"""Lightning's cost per optimizer step, measured step against step inside a real run.

bench.py's c/b compares whole epochs, and this shared VM's slow spells move it by several percent
between runs. Here one training batch of a real `python -m mnist_lab` run (same callbacks, logger and
precision) takes --steps pairs of optimizer steps on the same images, alternating two ways of taking a
step: the plain one (`loss.backward()`, the torch optimizer's `step()`) and Lightning's, as
Classifier.training_step does it (`manual_backward`, the LightningOptimizer's `step()`). A slow spell
then hits both alike. It also times one of the three hook events Lightning sends per step.
Lightning's progress counters are not updated by these extra steps, so the figure slightly understates
Lightning's cost. CPU only (the timer does not wait for a GPU).
`python benchmarks/step_overhead.py [--write BENCHMARKS.md] [overrides]`.
"""

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
from bench import config, header

from mnist_lab.module import optimizer_steps
from mnist_lab.train import train


class PairedSteps(L.Callback):
    """At the second training batch (the first is the warm-up), times plain and Lightning steps in turn."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.seconds: dict[str, list[float]] = {"plain": [], "lightning": [], "hook event": []}
        self.callbacks = 0  # in the run, this one included

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx != 1:
            return
        x, y = optimizer_steps(batch)[0]
        optimizer = pl_module.optimizers()
        plain_optimizer = optimizer.optimizer
        precision = trainer.strategy.precision_plugin

        def loss() -> torch.Tensor:
            with precision.forward_context():  # autocast, as in training_step, for bf16-mixed runs
                return F.cross_entropy(pl_module(x), y)

        def plain() -> None:
            plain_optimizer.zero_grad(set_to_none=True)
            loss().backward()
            plain_optimizer.step()

        def lightning() -> None:
            optimizer.zero_grad(set_to_none=True)
            pl_module.manual_backward(loss())
            optimizer.step()

        def hook_event() -> None:  # on_after_backward: the module's hook and every callback's
            precision.post_backward(x, pl_module)

        for i in range(self.steps):
            order = [("plain", plain), ("lightning", lightning)]
            for name, step in order if i % 2 else order[::-1]:
                start = time.perf_counter()
                step()
                self.seconds[name].append(time.perf_counter() - start)
            start = time.perf_counter()  # right after a step, with the caches as a step leaves them
            hook_event()
            self.seconds["hook event"].append(time.perf_counter() - start)
        self.callbacks = len(trainer.callbacks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="pairs of steps")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=cnn")
    args = parser.parse_args()

    cfg = config(
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        *args.overrides,
    )
    paired = PairedSteps(args.steps)
    with tempfile.TemporaryDirectory() as out:
        cfg.paths.output_dir = out
        train(cfg, [paired])

    us = {name: [1e6 * s for s in seconds] for name, seconds in paired.seconds.items()}
    plain, lightning = statistics.median(us["plain"]), statistics.median(us["lightning"])
    per_pair = statistics.median(b - a for a, b in zip(us["plain"], us["lightning"], strict=True))
    command = " ".join(
        ["python benchmarks/step_overhead.py", f"--steps {args.steps}", *map(shlex.quote, args.overrides)]
    )
    cells = [
        cfg.model._target_.rsplit(".", 1)[-1],
        cfg.data.batch_size,
        f"{plain:.0f} µs",
        f"{lightning:.0f} µs",
        f"{per_pair:.0f} µs",
        f"**{lightning / plain:.3f}**",
        f"{statistics.median(us['hook event']):.0f} µs ({paired.callbacks} callbacks, this one included)",
    ]
    block = "\n".join(
        [
            f"{datetime.date.today()} · {header('cpu')}",
            "",
            f"`{command}` ({args.steps} pairs of steps, medians)",
            "",
            "| model | batch | plain step | Lightning step | difference, paired | ratio "
            "| hook event (3 per step) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            "| " + " | ".join(map(str, cells)) + " |",
        ]
    )
    print("\n" + block)
    if args.write:
        with args.write.open("a") as f:
            f.write("\n" + block + "\n")


if __name__ == "__main__":
    main()
