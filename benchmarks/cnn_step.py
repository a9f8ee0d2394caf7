"""Where the Keras CNN's training step spends its time on this CPU, and what each idea changes.

For each precision (fp32, and bf16 autocast where the CPU has native bf16): a torch.profiler trace of the
plain training step (the project's CNN, Adadelta lr 1.0, batch 128, the on-device batches of the default
loader) lists the operators by self CPU time; then variants of the same network — the same layers,
parameters and dropout rates, each undoing one of the project's choices or trying another — are timed in
turns (one block of steps each, round after round), so that a slow spell of the machine hits all alike,
and the median time per step is compared with the project's step. The first variant undoes them all: the
step before they were made.
`python benchmarks/cnn_step.py [--steps N] [--rounds R] [--precision P ...] [--compile] [--write FILE]`.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from bench import command_line
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from mnist_lab.data import DeviceLoader, ShardedBatches
from mnist_lab.datasets import DATASETS, load_split
from mnist_lab.hardware import auto_precision, cpu_kind, cpu_threads, keep_freed_memory, matmul_gflops
from mnist_lab.models import CNN, Dropout, Flatten


class BlockMaxPool(nn.Module):
    """2×2 max-pooling as a reshape and a max over the two small axes: the same forward values; the
    gradient goes to the maximum, split between exact ties (max_pool2d gives it to the first)."""

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).amax((3, 5))


def swapped(
    net: nn.Sequential, kind: type[nn.Module], make: Callable[[nn.Module], nn.Module]
) -> nn.Sequential:
    net = copy.deepcopy(net)
    for index, layer in enumerate(net):
        if isinstance(layer, kind):
            net[index] = make(layer)
    return net


def keras_order(net: nn.Sequential) -> nn.Sequential:
    """ReLU before the max-pool, as Keras' mnist_cnn has it."""
    net = copy.deepcopy(net)
    (pool,) = [i for i, layer in enumerate(net) if isinstance(layer, nn.MaxPool2d)]
    net[pool], net[pool + 1] = net[pool + 1], net[pool]
    return net


def torch_dropout(net: nn.Sequential) -> nn.Sequential:
    return swapped(net, Dropout, lambda d: nn.Dropout(d.p))


def torch_flatten(net: nn.Sequential) -> nn.Sequential:
    return swapped(net, Flatten, lambda _: nn.Flatten())


class Variant(NamedTuple):
    net: nn.Module
    memory_format: torch.memory_format = torch.channels_last
    keep_freed_memory: bool = True
    threads: int | None = None  # None: the run's (hardware.cpu_threads)


def variants(base: nn.Sequential, compile_too: bool) -> dict[str, Variant]:
    found = {
        "project": Variant(copy.deepcopy(base)),
        "before: all four undone": Variant(
            keras_order(torch_flatten(torch_dropout(base))), keep_freed_memory=False
        ),
        "glibc's malloc defaults": Variant(copy.deepcopy(base), keep_freed_memory=False),
        "nn.Dropout (bernoulli_ masks)": Variant(torch_dropout(base)),
        "nn.Flatten (NCHW gradient into the pool)": Variant(torch_flatten(base)),
        "ReLU before the max-pool": Variant(keras_order(base)),
        "NCHW (contiguous)": Variant(copy.deepcopy(base), torch.contiguous_format),
        "max-pool as reshape + amax": Variant(swapped(base, nn.MaxPool2d, lambda _: BlockMaxPool())),
        "one torch thread": Variant(copy.deepcopy(base), threads=1),
    }
    if compile_too:
        found["torch.compile (inductor)"] = Variant(torch.compile(copy.deepcopy(base)))
    return found


class Stepper:
    """The plain training step of one variant: forward under autocast, cross-entropy, backward, Adadelta."""

    def __init__(self, variant: Variant, bf16: bool) -> None:
        self.net = variant.net.to(memory_format=variant.memory_format).train()
        self.memory_format = variant.memory_format
        self.keep_freed_memory = variant.keep_freed_memory
        self.threads = variant.threads or cpu_threads(1)
        self.optimizer = torch.optim.Adadelta(self.net.parameters(), lr=1.0, eps=1e-7)
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()

    def step(self, x: Tensor, y: Tensor) -> None:
        with self.autocast:
            loss = F.cross_entropy(self.net(x.contiguous(memory_format=self.memory_format)), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def batches(data_root: str) -> DeviceLoader:
    images, labels = load_split("mnist", data_root, train=True)
    info = DATASETS["mnist"]
    return DeviceLoader(
        images, labels, ShardedBatches(len(labels), 128, shuffle=True, seed=0), info.mean, info.std
    )


def top_ops(
    stepper: Stepper, data: list[tuple[Tensor, Tensor]], rows: int = 8
) -> list[tuple[str, float, float]]:
    """(operator, ms per step, share of the step) by self CPU time."""
    for x, y in data[:3]:
        stepper.step(x, y)
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        for x, y in data:
            stepper.step(x, y)
    events = trace.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]
    return [(e.key, e.self_cpu_time_total / 1000 / len(data), e.self_cpu_time_total / total) for e in ranked]


def logit_gap(variant: nn.Module, base: nn.Module, x: Tensor, memory_format: torch.memory_format) -> float:
    """Largest logit difference from the project's network with the same weights (eval mode, fp32):
    a variant must compute what the network computes."""
    with torch.no_grad():
        gap = (variant.eval()(x.contiguous(memory_format=memory_format)) - base.eval()(x)).abs().max()
    variant.train()
    base.train()
    return gap.item()


def timed(steppers: dict[str, Stepper], data: list[tuple[Tensor, Tensor]], rounds: int) -> dict[str, float]:
    """Median ms per step of each variant, measured in turns."""
    for stepper in steppers.values():  # warm-up (and compilation)
        for x, y in data[:3]:
            stepper.step(x, y)
    blocks: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(rounds):
        for name, stepper in steppers.items():
            keep_freed_memory(stepper.keep_freed_memory)
            torch.set_num_threads(stepper.threads)
            start = time.perf_counter()
            for x, y in data:
                stepper.step(x, y)
            blocks[name].append((time.perf_counter() - start) * 1000 / len(data))
    keep_freed_memory()
    torch.set_num_threads(cpu_threads(1))
    return {name: statistics.median(values) for name, values in blocks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per block")
    parser.add_argument("--rounds", type=int, default=5, help="blocks per variant")
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=["bf16-mixed", "32-true"],
        help="default: 32-true, and bf16-mixed first where the CPU has native bf16 (emulated: ~10× slower)",
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    parser.add_argument("--write", type=Path, help="append the tables to this Markdown file")
    parser.add_argument("--data-root", default=os.environ.get("MNIST_LAB_DATA_DIR", "data"))
    args = parser.parse_args()
    precisions = args.precision or list(dict.fromkeys([auto_precision("cpu")[0], "32-true"]))
    keep_freed_memory()  # as a training run does
    torch.manual_seed(0)
    loader = iter(batches(args.data_root))
    data = [next(loader) for _ in range(args.steps)]
    base = CNN()
    options = [f"--steps {args.steps}", f"--rounds {args.rounds}"]
    if args.precision:
        options.append(f"--precision {' '.join(args.precision)}")
    if args.compile:
        options.append("--compile")
    lines = [
        f"`{command_line('cnn_step.py', *options)}` on {datetime.date.today()}, CPU {cpu_kind()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; ms per "
        f"training step of batch 128 (median of {args.rounds} blocks of {args.steps} steps, variants in "
        f"turns). torch.mm of 512²: {matmul_gflops(torch.float32):.0f} GFLOP/s fp32, "
        f"{matmul_gflops(torch.bfloat16):.1f} GFLOP/s bf16.",
        "",
    ]
    for precision in precisions:
        bf16 = precision == "bf16-mixed"
        built = variants(base, args.compile)
        gaps = {name: logit_gap(v.net, base, data[0][0], v.memory_format) for name, v in built.items()}
        steppers = {name: Stepper(variant, bf16) for name, variant in built.items()}
        ops = top_ops(steppers["project"], data)
        ms = timed(steppers, data, args.rounds)
        reference = ms["project"]
        lines += [f"**{precision}**: where the project's step goes (torch.profiler, self CPU time)", ""]
        lines += ["| operator | ms per step | share |", "| --- | --- | --- |"]
        lines += [f"| `{name}` | {t:.1f} | {share:.0%} |" for name, t, share in ops]
        lines += ["", "| variant | ms per step | vs the project's step | max abs logit gap (eval, fp32) |"]
        lines += ["| --- | --- | --- | --- |"]
        lines += [f"| {name} | {t:.1f} | {reference / t:.2f}× | {gaps[name]:.1e} |" for name, t in ms.items()]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.write:
        with args.write.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
