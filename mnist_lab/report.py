"""`python -m mnist_lab.report runs=DIR`: one table of every results.json under the given directories.

Runs are grouped by their Hydra overrides without the seed, so the seeds of one configuration become one
row: mean ± std of the test accuracy and of the training minutes, the number of seeds, the protocol (what
the run validated on, which weights it tested), the network's size and cost, and the machine. Jobs that
failed (a failed.json in their directory) are listed below the table with their error. A picture plots
every run's test accuracy against its training time (accuracy_vs_time.png), a panel per dataset. A
written page (write=RESULTS.md) adds the published numbers of each dataset that conf/report.yaml cites.

A row whose overrides extend another row's (`experiment=best_mnist label_smoothing=0` extends
`experiment=best_mnist`) shows how far its validation accuracy moved from that row's: what one ingredient
adds. `section=TITLE` writes the table as one titled section of an existing page, so that a page holds
tables of different runs (the recipes, their ingredients), each rewritten by its own command.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import cycle
from pathlib import Path
from typing import Any

import hydra
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from mnist_lab.errors import UserError, one_line_errors
from mnist_lab.files import refuse_existing, save_figure, write_text
from mnist_lab.run_dirs import FAILED

COLUMNS = [
    "configuration",
    "dataset",
    "model",
    "seeds",
    "test acc (%)",
    "val acc best (%)",
    "val Δ (points)",
    "protocol",
    "epochs",
    "train min/run",
    "params",
    "MFLOPs/img",
    "device",
    "CPU",
]
TESTED = {"best": "tests the best epoch", "last": "tests the last epoch", "averaged": "tests the average"}
SECTION = re.compile(r"<!-- report section: (.+?) -->\n.*?<!-- end of report section -->\n", re.DOTALL)


def overrides(run_dir: Path) -> list[str]:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    return list(OmegaConf.load(overrides_file)) if overrides_file.exists() else []


def run_config(run_dir: Path) -> dict[str, Any]:
    config_file = run_dir / ".hydra" / "config.yaml"
    return OmegaConf.to_container(OmegaConf.load(config_file)) if config_file.exists() else {}


def protocol(run: dict[str, Any], config: dict[str, Any]) -> str:
    """What the run validated on and which weights it tested: selection on the test set is not a result."""
    val_size = config.get("data", {}).get("val_size")
    split = {None: "", 0: "val: the test set"}.get(val_size, f"val: {val_size:,} training images")
    return "; ".join(part for part in (split, TESTED.get(run.get("tested", ""), "")) if part)


def describe_training(run: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    configuration = [o for o in overrides(run_dir) if not o.startswith("seed=")]
    run["configuration"] = " ".join(configuration) or "(defaults)"
    run["protocol"] = protocol(run, run_config(run_dir))
    seconds = run.get("seconds_per_epoch")
    run["minutes"] = seconds * run["epochs"] / 60 if seconds else None  # validation excluded
    return run


def describe_evaluation(run: dict[str, Any], evaluation_dir: Path) -> dict[str, Any]:
    """An evaluation (mnist_lab.evaluate) of one checkpoint or an ensemble, described by the training runs
    that wrote its checkpoints (their results.json beside checkpoints/): what they were, and the training
    time they took together."""
    paths = [run["checkpoint"]] if isinstance(run["checkpoint"], str) else run["checkpoint"]
    members = []
    for path in paths:
        run_dir = Path(path).parent.parent
        if (run_dir / "results.json").exists():
            members.append(describe_training(json.loads((run_dir / "results.json").read_text()), run_dir))
    trained = " + ".join(sorted({member["configuration"] for member in members})) or "?"
    ensemble = f"ensemble of {len(paths)}: " if len(paths) > 1 else "evaluate: "
    tta = f", tta={run['tta']}" if run.get("tta", "none") != "none" else ""
    run["configuration"] = ensemble + trained + tta
    words = [f'"{o}"' if "'" in o else shlex.quote(o) for o in overrides(evaluation_dir)]
    run["command"] = " ".join(["python -m mnist_lab.evaluate", *words])
    run["protocol"] = members[0]["protocol"] if members else ""
    run["epochs"] = members[0]["epochs"] if members else ""
    complete = len(members) == len(paths) and all(member["minutes"] for member in members)
    run["minutes"] = sum(member["minutes"] for member in members) if complete else None
    return run


def load_runs(directories: list[Path]) -> list[dict[str, Any]]:
    """Every results.json under the directories: training runs and evaluations alike."""
    runs = []
    for directory in directories:
        for path in sorted(directory.rglob("results.json")):
            run = json.loads(path.read_text())
            describe = describe_evaluation if "checkpoint" in run else describe_training
            runs.append(describe(run, path.parent))
    return runs


def load_failures(directories: list[Path]) -> list[tuple[str, str]]:
    """(overrides, error) of every job that failed (its failed.json)."""
    return [
        (" ".join(overrides(path.parent)) or "(defaults)", json.loads(path.read_text())["error"])
        for directory in directories
        for path in sorted(directory.rglob(FAILED))
    ]


def commands(directories: list[Path], runs: list[dict[str, Any]]) -> list[str]:
    """The command line of every Hydra multirun under the directories (from its multirun.yaml), then of
    every evaluation among the runs."""
    lines = []
    for directory in directories:
        for path in sorted(directory.rglob("multirun.yaml")):
            sweep = OmegaConf.load(path).hydra.overrides
            hydra = [o for o in sweep.hydra if not o.startswith("hydra.mode=")]
            lines.append(" ".join(["python -m mnist_lab -m", *sweep.task, *hydra]))
    return lines + [run["command"] for run in runs if "command" in run]


def mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def mean_val(group: list[dict[str, Any]]) -> float | None:
    values = [run["val/acc_best"] for run in group if run.get("val/acc_best") is not None]
    return statistics.mean(values) if values else None


def extended(configuration: str, groups: Mapping[str, list[dict[str, Any]]]) -> str | None:
    """The configuration of the same dataset with the most overrides, all of them among this one's."""
    words = set(configuration.split())
    dataset = groups[configuration][0]["dataset"]
    bases = [
        other
        for other, group in groups.items()
        if other != configuration and group[0]["dataset"] == dataset and set(other.split()) < words
    ]
    return max(bases, key=lambda other: len(other.split()), default=None)


def val_delta(configuration: str, groups: Mapping[str, list[dict[str, Any]]]) -> str:
    base = extended(configuration, groups)
    if base is None:
        return ""
    mine, theirs = mean_val(groups[configuration]), mean_val(groups[base])
    return f"{100 * (mine - theirs):+.2f} vs {base}" if mine is not None and theirs is not None else ""


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
                "val Δ (points)": val_delta(configuration, groups),
                "protocol": first["protocol"],
                "epochs": str(first["epochs"]),
                "train min/run": mean_std([r["minutes"] for r in group]),
                "params": f"{first['params']:,}",
                "MFLOPs/img": f"{first['mflops']:.1f}" if "mflops" in first else "",
                "device": first["device"],
                "CPU": first.get("cpu", ""),
            }
        )
    return rows


def accuracy_vs_time(runs: list[dict[str, Any]]) -> Figure:
    """A panel per dataset: a dot per run (one per seed), and a larger one at each configuration's mean."""
    datasets = sorted({run["dataset"] for run in runs})
    figure, axes = plt.subplots(
        1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False, layout="constrained"
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for run in runs:
            if run["dataset"] == dataset:
                groups[run["configuration"]].append(run)
        for (configuration, group), color in zip(groups.items(), cycle(plt.cm.tab10.colors), strict=False):
            minutes = [run["minutes"] for run in group]
            accuracy = [100 * run["test/acc"] for run in group]
            ax.scatter(minutes, accuracy, s=16, color=color, alpha=0.5)
            label = f"{configuration} ({len(group)} seeds)" if len(group) > 1 else configuration
            mean = (statistics.mean(minutes), statistics.mean(accuracy))
            ax.scatter(*mean, s=80, color=color, edgecolors="black", label=label)
        ax.set(xscale="log", title=dataset, ylabel="test accuracy (%)")
        ax.set_xlabel("training time per run (minutes, log scale)")
        ax.legend(fontsize=7)
    return figure


def picture_beside(page: Path) -> Path:
    """Where `write=PAGE` puts the picture: RESULTS.md, RESULTS_accuracy_vs_time.png."""
    return page.with_name(f"{page.stem}_accuracy_vs_time.png")


def markdown(rows: list[dict[str, str]], failures: Sequence[tuple[str, str]] = ()) -> str:
    """The table without the columns no row fills."""
    columns = [column for column in COLUMNS if any(row[column] for row in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    if "val Δ (points)" in columns:
        lines += ["", "val Δ: the mean best validation accuracy minus that of the row named, in points."]
    if failures:
        lines += ["", f"Failed jobs ({len(failures)}):", "", "| overrides | error |", "| --- | --- |"]
        lines += [f"| {job} | {error.replace('|', '/')} |" for job, error in failures]
    return "\n".join(lines) + "\n"


def references_section(references: Mapping[str, Sequence[str]], datasets: Sequence[str]) -> str:
    """The published numbers for the datasets of the table, as a Markdown list per dataset."""
    cited = [dataset for dataset in datasets if references.get(dataset)]
    if not cited:
        return ""
    lines = ["", "Published numbers to compare with (test accuracy):", ""]
    for dataset in cited:
        lines += [f"- {dataset}:", *(f"  - {reference}" for reference in references[dataset])]
    return "\n".join(lines) + "\n"


def sections(page: str) -> dict[str, str]:
    """The sections `section=TITLE` wrote into a page, by title."""
    return {match[1]: match[0] for match in SECTION.finditer(page)}


def with_section(page: str, title: str, body: str) -> str:
    """The page with its section of this title replaced by (or, when it has none, ended with) the body."""
    block = f"<!-- report section: {title} -->\n## {title}\n\n{body}<!-- end of report section -->\n"
    old = sections(page).get(title)
    return page.replace(old, block) if old else (page.rstrip("\n") + "\n\n" if page else "") + block


def csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def refuse_to_replace(page: Path, section: str | None, overwrite: bool) -> None:
    """A written page (and its picture), or one section of it, is replaced only when the user says so."""
    if section is None:
        for path in (page, picture_beside(page)):
            refuse_existing(path, overwrite)
    elif not overwrite and page.exists() and section in sections(page.read_text()):
        raise UserError(f"{page}: section '{section}' exists and was left as it is; add overwrite=true")


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="report")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        directories = [Path(d) for d in ([cfg.runs] if isinstance(cfg.runs, str) else cfg.runs)]
        if cfg.write:
            refuse_to_replace(Path(cfg.write), cfg.section, cfg.overwrite)
        missing = [d for d in directories if not d.is_dir()]
        if missing:
            raise UserError(f"runs: not a directory: {', '.join(map(str, missing))}")
        runs, failures = load_runs(directories), load_failures(directories)
        if not runs and not failures:
            raise UserError(f"no results.json under {', '.join(map(str, directories))}")
    rows = table(runs)
    page = markdown(rows, failures)
    out = Path(cfg.paths.output_dir)
    write_text(out / "report.md", page)
    write_text(out / "report.csv", csv_text(rows))
    timed = [run for run in runs if run["minutes"]]
    figure = accuracy_vs_time(timed) if timed else None
    if figure:
        save_figure(figure, out / "accuracy_vs_time.png", dpi=110)
    print(page, end="")
    if not cfg.write:
        return
    written = Path(cfg.write)
    before = written.read_text() if written.exists() else ""
    dirs = " ".join(map(str, directories))
    runs_override = f"runs={dirs}" if len(directories) == 1 else f"'runs=[{','.join(map(str, directories))}]'"
    section = f" {shlex.quote(f'section={cfg.section}')}" if cfg.section else ""
    body = (
        f"Written by `python -m mnist_lab.report {runs_override} write={cfg.write}{section} overwrite=true` "
        f"from the runs of:\n\n```bash\n" + "\n".join(commands(directories, runs)) + f"\n```\n\n{page}"
    )
    if cfg.section:
        write_text(written, with_section(before, cfg.section, body))
        return
    picture = picture_beside(written)
    kept_sections = "".join("\n" + block for block in sections(before).values())
    write_text(
        written,
        f"# {written.stem.title()}\n\n{body}"
        + references_section(cfg.references, sorted({run["dataset"] for run in runs}))
        + (f"\n![test accuracy against training time]({picture.name})\n" if figure else "")
        + kept_sections,
    )
    if figure:
        save_figure(figure, picture, dpi=110)


if __name__ == "__main__":
    main()
