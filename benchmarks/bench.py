"""Seconds per training epoch on real MNIST, three ways, in one process.

(a) the loop most users write: torchvision Dataset + DataLoader (per-sample transforms) and a plain
    PyTorch training loop;
(b) the same plain loop on mnist_lab's on-device loader;
(c) mnist_lab through Lightning's Trainer, as `python -m mnist_lab` runs it (logger, checkpoints and
    progress bar included).

Each variant trains the same network from the same initialisation for --epochs epochs; the first epoch
is the warm-up and the fastest of the rest is reported (validation excluded). Test accuracy is printed
beside the times so that speed never hides an accuracy loss. Run it on a quiet machine: `make bench`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig

from mnist_lab.data import DeviceLoader, MNISTDataModule, ShardedBatches
from mnist_lab.report import mean_std
from mnist_lab.train import build_module, train, versions


def config(model: str, accelerator: str, epochs: int, overrides: list[str]) -> DictConfig:
    with initialize_config_module("mnist_lab.conf", version_base="1.3"):
        return compose(
            "config",
            [
                f"model={model}",
                f"trainer.accelerator={accelerator}",
                f"trainer.max_epochs={epochs}",
                *overrides,
            ],
        )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(cfg: DictConfig, device: torch.device, baseline: bool) -> tuple[list[float], float]:
    """Train with the loop from the PyTorch tutorials; return per-epoch seconds and final test accuracy.

    baseline=True is variant (a): torchvision's Dataset + DataLoader, fp32, torch's default optimizer
    implementation. baseline=False is variant (b): mnist_lab's on-device loader and the config's
    precision, memory format and optimizer settings, i.e. the arithmetic (c) does, without Lightning.
    """
    torch.manual_seed(cfg.seed)
    datamodule: MNISTDataModule = instantiate(cfg.data, loader="torchvision" if baseline else "device")
    datamodule.setup()
    module = build_module(cfg).to(device)
    net = module.net.to(memory_format=torch.contiguous_format) if baseline else module
    implementation = ("fused", "foreach") if baseline else ()
    optimizer = instantiate(
        {k: v for k, v in cfg.optimizer.items() if k not in implementation}, params=net.parameters()
    )
    autocast = not baseline and cfg.trainer.precision == "bf16-mixed"
    if baseline:
        train_loader = datamodule.train_dataloader()
    else:
        images, labels = datamodule.splits["train"]
        sampler = ShardedBatches(len(labels), cfg.data.batch_size, shuffle=True, seed=cfg.seed, device=device)
        train_loader = DeviceLoader(images, labels, sampler, datamodule.mean, datamodule.std)
    seconds = []
    for epoch in range(cfg.trainer.max_epochs):
        if not baseline:
            sampler.set_epoch(epoch)
        net.train()
        sync(device)
        start = time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        seconds.append(time.perf_counter() - start)
    net.eval()
    correct = 0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for x, y in datamodule.test_dataloader():
            correct += (net(x.to(device)).argmax(1) == y.to(device)).sum().item()
    return seconds, correct / len(datamodule.splits["test"][1])


def lightning_run(cfg: DictConfig) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as out:
        cfg.paths.output_dir = out
        results = train(cfg)
    return results["epoch_seconds"], results["test/acc"]


def timed(seconds: list[float]) -> float:
    """The fastest epoch after the warm-up epoch: the least disturbed by other work on the machine."""
    return min(seconds[1:] if len(seconds) > 1 else seconds)


def speedrun(seeds: int, accelerator: str) -> str:
    """`experiment=speedrun` over several seeds: training seconds and test accuracy, mean ± std."""
    seconds, accuracies = [], []
    for seed in range(seeds):
        with initialize_config_module("mnist_lab.conf", version_base="1.3"):
            cfg = compose(
                "config", ["experiment=speedrun", f"seed={seed}", f"trainer.accelerator={accelerator}"]
            )
        epoch_seconds, acc = lightning_run(cfg)
        seconds.append(sum(epoch_seconds))
        accuracies.append(acc)
        print(f"speedrun seed {seed}: {seconds[-1]:.2f} s of training · test acc {acc:.4f}", flush=True)
    per_seed = " ".join(f"{100 * a:.2f}" for a in accuracies)
    cells = [
        f"speedrun ({seeds} seeds)",
        f"{mean_std(seconds)} s",
        f"{mean_std(accuracies, 100)} %",
        per_seed,
    ]
    return "| " + " | ".join(cells) + " |"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=3, help="the first one is the warm-up")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--speedrun-seeds", type=int, default=3, help="0 skips the speedrun")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every variant")
    args = parser.parse_args()

    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    header = f"{machine()} · {device} · " + " · ".join(f"{k} {v}" for k, v in versions().items())
    print(header, flush=True)
    rows = []
    for model in args.models:
        cfg = config(model, args.accelerator, args.epochs, args.overrides)
        runs = {}
        for name, run in (
            ("a", lambda cfg=cfg: plain_loop(cfg, device, baseline=True)),
            ("b", lambda cfg=cfg: plain_loop(cfg, device, baseline=False)),
            ("c", lambda cfg=cfg: lightning_run(cfg)),
        ):
            seconds, acc = run()
            runs[name] = (timed(seconds), acc)
            epochs = " ".join(f"{s:.2f}" for s in seconds)
            print(f"{model} ({name}): {epochs} s/epoch · test acc {acc:.4f}", flush=True)
        (a, acc_a), (b, acc_b), (c, acc_c) = runs["a"], runs["b"], runs["c"]
        cells = [model, cfg.data.batch_size, f"{a:.2f}", f"{b:.2f}", f"{c:.2f}", f"**{a / c:.2f}×**"]
        cells += [f"{c / b:.3f}", f"{acc_a:.4f} / {acc_b:.4f} / {acc_c:.4f}"]
        rows.append("| " + " | ".join(map(str, cells)) + " |")

    table = "\n".join(
        [
            "| model | batch | (a) torchvision + loop, s/epoch | (b) device loader + loop "
            "| (c) mnist_lab (Lightning) | a/c speed-up | c/b Lightning overhead | test acc a / b / c |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    if args.speedrun_seeds:
        table += "\n\n| run | training time | test accuracy | per seed |\n| --- | --- | --- | --- |\n"
        table += speedrun(args.speedrun_seeds, args.accelerator)
    options = [
        f"--models {' '.join(args.models)}",
        f"--epochs {args.epochs}",
        f"--accelerator {args.accelerator}",
        f"--speedrun-seeds {args.speedrun_seeds}",
    ]
    command = " ".join(["python benchmarks/bench.py", *options, *args.overrides])
    block = f"{datetime.date.today()} · {header}\n\n`{command}`\n\n{table}\n"
    print("\n" + block)
    if args.write:
        with args.write.open("a") as f:
            f.write("\n" + block)


if __name__ == "__main__":
    main()
