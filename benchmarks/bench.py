"""Seconds per training epoch on real MNIST, three ways, in one process.

(a) the loop most users write, as pytorch/examples' mnist writes it: torchvision's MNIST with
    ToTensor + Normalize per sample, a DataLoader, and a plain PyTorch training loop;
(b) the same plain loop on mnist_lab's on-device loader;
(c) mnist_lab through Lightning's Trainer, as `python -m mnist_lab` runs it (logger, checkpoints and
    progress bar included).

Each variant trains the same network from the same initialisation for --epochs epochs. The epochs are
interleaved (c, a, b, c, a, b, ...) so that a slow spell of a shared machine hits every variant alike;
the first epoch is the warm-up and the fastest of the rest is reported (validation excluded). Test
accuracy is printed beside the times so that speed never hides an accuracy loss. `make bench`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from mnist_lab.build import build_module, settle_precision
from mnist_lab.callbacks import EpochTimer
from mnist_lab.data import DeviceLoader, MNISTDataModule, ShardedBatches
from mnist_lab.hardware import AVX2_KERNELS, cpu_kind
from mnist_lab.report import mean_std
from mnist_lab.results import versions
from mnist_lab.train import train


class Runs(NamedTuple):
    seconds: list[float]
    accuracies: list[float]


def config(*overrides: str) -> DictConfig:
    with initialize_config_module("mnist_lab.conf", version_base="1.3"):
        return compose("config", list(overrides))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PlainLoop:
    """Variants (a) and (b): the training loop from the PyTorch tutorials, one epoch per call.

    baseline=True is (a): torchvision's Dataset (ToTensor + Normalize) + DataLoader, fp32, torch's
    default optimizer implementation. baseline=False is (b): mnist_lab's on-device loader and the
    config's precision, memory format and optimizer settings, i.e. the arithmetic (c) does, without
    Lightning. Each loop
    keeps its own RNG state (dropout), so that interleaving the variants changes none of their numbers.
    """

    def __init__(self, cfg: DictConfig, device: torch.device, baseline: bool) -> None:
        torch.manual_seed(cfg.seed)
        self.device = device
        self.datamodule: MNISTDataModule = instantiate(
            cfg.data, loader="torchvision" if baseline else "device"
        )
        self.datamodule.setup()
        module = build_module(cfg).to(device)
        self.net = module.net.to(memory_format=torch.contiguous_format) if baseline else module
        implementation = ("fused", "foreach") if baseline else ()
        self.optimizer = instantiate(
            {k: v for k, v in cfg.optimizer.items() if k not in implementation}, params=self.net.parameters()
        )
        self.autocast = not baseline and cfg.trainer.precision == "bf16-mixed"
        if baseline:  # data.loader=torchvision: as pytorch/examples' mnist writes it
            self.train_loader = self.datamodule.train_dataloader()
        else:
            images, labels = self.datamodule.splits["train"]
            self.sampler = ShardedBatches(
                len(labels), cfg.data.batch_size, shuffle=True, seed=cfg.seed, device=device
            )
            self.train_loader = DeviceLoader(
                images, labels, self.sampler, self.datamodule.mean, self.datamodule.std
            )
        self.rng = self.rng_state()
        self.seconds: list[float] = []

    def rng_state(self) -> list[Tensor]:
        """The generators dropout draws from: the CPU's, and the GPU's on CUDA."""
        cuda = [torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else []
        return [torch.get_rng_state(), *cuda]

    def train_epoch(self) -> None:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices), torch.enable_grad():
            torch.set_rng_state(self.rng[0])
            if devices:
                torch.cuda.set_rng_state(self.rng[1], self.device)
            if isinstance(self.train_loader, DeviceLoader):
                self.sampler.set_epoch(len(self.seconds))
            self.net.train()
            sync(self.device)
            start = time.perf_counter()
            for x, y in self.train_loader:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    loss = F.cross_entropy(self.net(x), y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            sync(self.device)
            self.seconds.append(time.perf_counter() - start)
            self.rng = self.rng_state()

    def test_accuracy(self) -> float:
        self.net.eval()
        correct = 0
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            for x, y in self.datamodule.test_dataloader():
                correct += (self.net(x.to(self.device)).argmax(1) == y.to(self.device)).sum().item()
        return correct / len(self.datamodule.splits["test"][1])


class Interleaved(L.Callback):
    """Trains one epoch of every plain loop after each of (c)'s epochs, once (c)'s clock has stopped."""

    def __init__(self, loops: list[PlainLoop]) -> None:
        self.loops = loops

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        (timer,) = [c for c in trainer.callbacks if isinstance(c, EpochTimer)]
        assert len(timer.epoch_seconds) == trainer.current_epoch + 1, "EpochTimer must run first"
        for loop in self.loops:
            loop.train_epoch()


def lightning_run(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as out:
        cfg.paths.output_dir = out
        results = train(cfg, callbacks)
    return results["epoch_seconds"], results["test/acc"]


def timed(seconds: list[float]) -> float:
    """The fastest epoch after the warm-up epoch: the least disturbed by other work on the machine."""
    return min(seconds[1:] if len(seconds) > 1 else seconds)


def speedruns(variants: dict[str, list[str]], seeds: int, accelerator: str) -> dict[str, Runs]:
    """`experiment=speedrun` with each variant's overrides, seed by seed and variant by variant in turn (a
    slow spell hits every variant alike): training seconds (validation excluded) and test accuracies."""
    runs = {name: Runs([], []) for name in variants}
    for seed in range(seeds):
        for name, overrides in variants.items():
            cfg = config(
                "experiment=speedrun", f"seed={seed}", f"trainer.accelerator={accelerator}", *overrides
            )
            epoch_seconds, acc = lightning_run(cfg)
            seconds = sum(epoch_seconds)
            runs[name].seconds.append(seconds)
            runs[name].accuracies.append(acc)
            print(f"{name} seed {seed}: {seconds:.2f} s of training · test acc {acc:.4f}", flush=True)
    return runs


def speedrun_row(name: str, runs: Runs, *extra: str) -> str:
    """| name | training time | test accuracy | *extra | per seed |"""
    per_seed = " ".join(f"{100 * a:.2f}" for a in runs.accuracies)
    cells = [name, f"{mean_std(runs.seconds)} s", f"{mean_std(runs.accuracies, 100)} %", *extra, per_seed]
    return "| " + " | ".join(cells) + " |"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    return f"{cpu} ({cpu_kind()}), {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"


def header(device: str) -> str:
    """The first line of a benchmark block: machine, device and versions."""
    return f"{machine()} · {device} · " + " · ".join(f"{k} {v}" for k, v in versions().items())


def command_line(script: str, *options: str) -> str:
    """The command that reruns a benchmark: its options, after the instruction-set caps in force (what
    `make ... CPU=avx2` sets), so that a block taken on the AVX2 kernels says so."""
    caps = [f"{name}={os.environ[name]}" for name in AVX2_KERNELS if os.environ.get(name)]
    return " ".join([*caps, "python", f"benchmarks/{script}", *options])


def publish(block: str, markdown: Path | None) -> None:
    """Print a benchmark's block and append it to the Markdown file, if one is named (`--write`)."""
    print("\n" + block)
    if markdown:
        with markdown.open("a") as f:
            f.write("\n" + block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=4, help="the first one is the warm-up")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--speedrun-seeds", type=int, default=3, help="0 skips the speedrun")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every variant")
    args = parser.parse_args()

    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    first_line = header(device.type)
    print(first_line, flush=True)
    rows = []
    for model in args.models:
        cfg = config(
            f"model={model}",
            f"trainer.accelerator={args.accelerator}",
            f"trainer.max_epochs={args.epochs}",
            *args.overrides,
        )
        settle_precision(cfg)  # (b) computes in the precision (c) runs in
        plain = {name: PlainLoop(cfg, device, baseline=name == "a") for name in ("a", "b")}
        seconds_c, acc_c = lightning_run(cfg, [Interleaved(list(plain.values()))])
        runs = {name: (loop.seconds, loop.test_accuracy()) for name, loop in plain.items()}
        runs["c"] = (seconds_c, acc_c)
        for name, (seconds, acc) in runs.items():
            epochs = " ".join(f"{s:.2f}" for s in seconds)
            print(f"{model} ({name}): {epochs} s/epoch · test acc {acc:.4f}", flush=True)
            runs[name] = (timed(seconds), acc)
        (a, acc_a), (b, acc_b), (c, acc_c) = runs["a"], runs["b"], runs["c"]
        cells = [
            f"{model} ({cfg.trainer.precision})",
            cfg.data.batch_size,
            f"{a:.2f}",
            f"{b:.2f}",
            f"{c:.2f}",
            f"**{a / c:.2f}×**",
        ]
        per_step = (c - b) / len(plain["b"].train_loader) * 1e6  # the loop runs one optimizer step per batch
        cells += [f"{c / b:.3f}", f"{per_step:.0f} µs", f"{acc_a:.4f} / {acc_b:.4f} / {acc_c:.4f}"]
        rows.append("| " + " | ".join(map(str, cells)) + " |")

    table = "\n".join(
        [
            "| model | batch | (a) torchvision + loop, s/epoch | (b) device loader + loop "
            "| (c) mnist_lab (Lightning) | a/c speed-up | c/b Lightning overhead | (c - b) per step "
            "| test acc a / b / c |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    if args.speedrun_seeds:
        table += "\n\n| run | training time | test accuracy | per seed |\n| --- | --- | --- | --- |\n"
        runs = speedruns({"speedrun": []}, args.speedrun_seeds, args.accelerator)["speedrun"]
        table += speedrun_row(f"speedrun ({args.speedrun_seeds} seeds)", runs)
    options = [
        f"--models {' '.join(args.models)}",
        f"--epochs {args.epochs}",
        f"--accelerator {args.accelerator}",
        f"--speedrun-seeds {args.speedrun_seeds}",
    ]
    command = command_line("bench.py", *options, *args.overrides)
    publish(f"{datetime.date.today()} · {first_line}\n\n`{command}`\n\n{table}\n", args.write)


if __name__ == "__main__":
    main()
