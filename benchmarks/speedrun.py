"""`experiment=speedrun` beside variants of its recipe, seed by seed in turns.

Each variant is the speedrun with some Hydra overrides. For every seed each variant trains once, one after
the other, so that a slow spell of a shared machine hits every variant alike. The table gives each
variant's training time (validation excluded) and test accuracy, mean ± std over the seeds, and its mean
time over the speedrun's.
`python benchmarks/speedrun.py [--seeds N] [--overrides "OVERRIDE ..."] [--write BENCHMARKS.md]
["NAME: OVERRIDE ..." ...]`, e.g.
`python benchmarks/speedrun.py --seeds 5 "batch 512: data.batch_size=512 optimizer.lr=0.02"`.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
from pathlib import Path

from bench import header, publish, speedrun_row, speedruns


def variant(text: str) -> tuple[str, list[str]]:
    name, colon, overrides = text.partition(":")
    if not colon or name.strip() in ("", "speedrun"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: write a variant as 'NAME: OVERRIDE ...', NAME not speedrun"
        )
    return name.strip(), shlex.split(overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument(
        "--overrides", type=shlex.split, default=[], help="for every variant, the speedrun too"
    )
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("variants", nargs="*", type=variant, help="'NAME: OVERRIDE ...'")
    args = parser.parse_args()

    first_line = header("cuda" if args.accelerator == "gpu" else "cpu")  # the device, as bench.py names it
    print(first_line, flush=True)
    variants = dict([("speedrun", []), *args.variants])
    runs = speedruns({name: args.overrides + o for name, o in variants.items()}, args.seeds, args.accelerator)
    baseline = statistics.mean(runs["speedrun"].seconds)
    rows = [
        speedrun_row(
            f"{name}: `{' '.join(overrides)}`" if overrides else name,
            runs[name],
            f"{statistics.mean(runs[name].seconds) / baseline:.2f}",
        )
        for name, overrides in variants.items()
    ]
    command = shlex.join(
        ["python", "benchmarks/speedrun.py", "--seeds", str(args.seeds), "--accelerator", args.accelerator]
        + (["--overrides", shlex.join(args.overrides)] if args.overrides else [])
        + [f"{name}: {' '.join(overrides)}" for name, overrides in args.variants]
    )
    table = [
        "| variant | training time | test accuracy | time / speedrun's | per seed |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]
    publish(
        f"{datetime.date.today()} · {first_line}\n\n`{command}`\n\n" + "\n".join(table) + "\n", args.write
    )


if __name__ == "__main__":
    main()
