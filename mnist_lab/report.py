"""`python -m mnist_lab.report DIR...`: one table of every results.json under the given directories.

Runs are grouped by their Hydra overrides without the seed, so the seeds of one configuration become one
row: mean ± std of the test accuracy, the number of seeds, seconds per epoch and parameters.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

COLUMNS = [
    "configuration",
    "dataset",
    "model",
    "seeds",
    "test acc (%)",
    "val acc best (%)",
    "s/epoch",
    "epochs",
    "params",
    "device",
]


def load_runs(directories: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for directory in directories:
        for path in sorted(directory.rglob("results.json")):
            run = json.loads(path.read_text())
            overrides_file = path.parent / ".hydra" / "overrides.yaml"
            overrides = list(OmegaConf.load(overrides_file)) if overrides_file.exists() else []
            run["configuration"] = " ".join(o for o in overrides if not o.startswith("seed=")) or "(defaults)"
            runs.append(run)
    return runs


def sweep_commands(directories: list[Path]) -> list[str]:
    """The command line of every Hydra multirun under the directories (from its multirun.yaml)."""
    commands = []
    for directory in directories:
        for path in sorted(directory.rglob("multirun.yaml")):
            overrides = OmegaConf.load(path).hydra.overrides
            hydra = [o for o in overrides.hydra if not o.startswith("hydra.mode=")]
            commands.append(" ".join(["python -m mnist_lab -m", *overrides.task, *hydra]))
    return commands


def mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(runs: list[dict[str, Any]]) -> list[dict[str, str]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[run["configuration"]].append(run)
    rows = []
    for configuration, group in groups.items():
        first = group[0]
        rows.append(
            {
                "configuration": configuration,
                "dataset": first["dataset"],
                "model": first["model"],
                "seeds": str(len(group)),
                "test acc (%)": mean_std([r["test/acc"] for r in group], 100),
                "val acc best (%)": mean_std([r.get("val/acc_best") for r in group], 100),
                "s/epoch": mean_std([r["seconds_per_epoch"] for r in group]),
                "epochs": str(first["epochs"]),
                "params": f"{first['params']:,}",
                "device": first["device"],
            }
        )
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="+", type=Path, help="run or sweep directories to collect")
    parser.add_argument(
        "--out", type=Path, help="write report.md and report.csv here (default: the first DIR)"
    )
    parser.add_argument(
        "--write", type=Path, help="also write this Markdown file: the sweeps' commands and the table"
    )
    args = parser.parse_args(argv)
    missing = [d for d in args.directories if not d.is_dir()]
    if missing:
        parser.error(f"not a directory: {', '.join(map(str, missing))}")
    runs = load_runs(args.directories)
    if not runs:
        parser.error(f"no results.json under {', '.join(map(str, args.directories))}")
    rows = table(runs)
    out = args.out or args.directories[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(rows))
    (out / "report.csv").write_text(csv_text(rows))
    print(markdown(rows), end="")
    if args.write:
        sweeps = "\n".join(sweep_commands(args.directories))
        dirs = " ".join(map(str, args.directories))
        args.write.write_text(
            f"# {args.write.stem.title()}\n\n"
            f"Written by `python -m mnist_lab.report {dirs} --write {args.write}` from the runs of:\n\n"
            f"```bash\n{sweeps}\n```\n\n{markdown(rows)}"
        )


if __name__ == "__main__":
    main()
