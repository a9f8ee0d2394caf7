import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mnist_lab.report import accuracy_vs_time
from tests.conftest import REPO, cli_env, run_cli


def fake_run(directory: Path, overrides: list[str], acc: float, seconds: float) -> None:
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (directory / ".hydra" / "config.yaml").write_text("data:\n  val_size: 5000\n")
    results = {
        "test/acc": acc,
        "val/acc_best": acc,
        "seconds_per_epoch": seconds,
        "epochs": 5,
        "params": 407050,
        "mflops": 0.813056,
        "tested": "best",
    }
    results |= {"dataset": "mnist", "model": "mlp", "device": "cpu (2 threads)", "cpu": "AVX2"}
    (directory / "results.json").write_text(json.dumps(results))


def test_report_groups_seeds_into_one_row(tmp_path: Path, real_data_root: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed, acc in enumerate([0.97, 0.98, 0.99]):
        fake_run(sweep / f"model=mlp,seed={seed}", ["model=mlp", f"seed={seed}"], acc, 2.0 + seed)
    fake_run(sweep / "model=cnn,seed=0", ["model=cnn", "seed=0"], 0.99, 30.0)
    # mnist_lab.evaluate of two of them as one: described by the runs that wrote the checkpoints
    members = [str(sweep / f"model=mlp,seed={seed}" / "checkpoints" / "best.ckpt") for seed in (0, 1)]
    ensemble = {"test/acc": 0.991, "checkpoint": members, "tta": "shift", "params": 814100, "mflops": 8.1}
    ensemble |= {"dataset": "mnist", "model": "ensemble", "device": "cpu (2 threads)", "cpu": "AVX2"}
    evaluation = sweep / "ensemble"
    (evaluation / ".hydra").mkdir(parents=True)
    (evaluation / ".hydra" / "overrides.yaml").write_text("- ckpt_path=[a.ckpt,b.ckpt]\n- tta=shift\n")
    (evaluation / "results.json").write_text(json.dumps(ensemble))
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    hydra:\n    - hydra.sweep.dir=sweep\n    - hydra.mode=MULTIRUN\n"
        "    task:\n    - model=mlp,cnn\n    - seed=0,1,2\n"
    )

    done = run_cli(
        tmp_path, real_data_root, f"runs={sweep}", f"write={tmp_path / 'RESULTS.md'}", tool="mnist_lab.report"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout
    mlp_row = next(line for line in printed.splitlines() if line.startswith("| model=mlp |"))
    assert "| 3 | 98.00 ± 1.00 | 98.00 ± 1.00 | val: 5,000 training images; tests the best epoch |" in mlp_row
    # 2, 3 and 4 s/epoch for 5 epochs: 10, 15 and 20 s of training
    assert "| 5 | 0.25 ± 0.08 | 407,050 | 0.8 | cpu (2 threads) | AVX2 |" in mlp_row
    assert "| model=cnn | mnist | mlp | 1 | 99.00 |" in printed
    # the members' 10 and 15 s of training
    assert "| ensemble of 2: model=mlp, tta=shift | mnist | ensemble | 1 | 99.10 |  | val: 5,000" in printed
    assert "| 5 | 0.42 | 814,100 | 8.1 |" in printed
    (out,) = (tmp_path / "out" / "report").iterdir()
    assert (out / "report.md").read_text() == printed
    assert (out / "report.csv").read_text().splitlines()[0].startswith("configuration,dataset,model,seeds")
    written = (tmp_path / "RESULTS.md").read_text()
    assert (
        "python -m mnist_lab -m model=mlp,cnn seed=0,1,2 hydra.sweep.dir=sweep\n" in written
        and mlp_row in written
    )
    assert f"write={tmp_path / 'RESULTS.md'} overwrite=true`" in written
    assert "\npython -m mnist_lab.evaluate 'ckpt_path=[a.ckpt,b.ckpt]' tta=shift\n```" in written
    # the published numbers of the table's dataset (conf/report.yaml), none of another's
    assert "- mnist:\n  - TensorFlow's beginner tutorial" in written and "Zalando" not in written
    assert "![test accuracy against training time](RESULTS_accuracy_vs_time.png)" in written
    for picture in (out / "accuracy_vs_time.png", tmp_path / "RESULTS_accuracy_vs_time.png"):
        assert Image.open(picture).format == "PNG"

    # the page exists now: the same command leaves it as it is until told to replace it
    (tmp_path / "RESULTS.md").write_text("edited by hand")
    again = run_cli(
        tmp_path, real_data_root, f"runs={sweep}", f"write={tmp_path / 'RESULTS.md'}", tool="mnist_lab.report"
    )
    assert again.returncode == 1 and "exists and was left as it is; add overwrite=true" in again.stderr
    assert (tmp_path / "RESULTS.md").read_text() == "edited by hand"
    replaced = run_cli(
        tmp_path,
        real_data_root,
        f"runs={sweep}",
        f"write={tmp_path / 'RESULTS.md'}",
        "overwrite=true",
        tool="mnist_lab.report",
    )
    assert replaced.returncode == 0 and (tmp_path / "RESULTS.md").read_text() == written


def test_a_section_of_the_page_shows_what_each_ingredient_adds(tmp_path: Path, real_data_root: Path) -> None:
    recipes, ingredients = tmp_path / "recipes", tmp_path / "ingredients"
    fake_run(recipes / "seed=0", ["model=mlp", "seed=0"], 0.99, 2.0)
    for seed, acc in enumerate([0.97, 0.98]):
        fake_run(ingredients / f"recipe{seed}", ["model=mlp", f"seed={seed}"], 0.985, 2.0)
        fake_run(ingredients / f"without{seed}", ["model=mlp", "label_smoothing=0", f"seed={seed}"], acc, 2.0)
    page, title = tmp_path / "RESULTS.md", "What each ingredient adds"

    def report(*overrides: str) -> str:
        done = run_cli(tmp_path, real_data_root, f"write={page}", *overrides, tool="mnist_lab.report")
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    report(f"runs={recipes}")
    whole = page.read_text()
    printed = report(f"runs={ingredients}", f"section={title}")
    # the validation accuracy 1 point below the recipe's it extends: 97.5 against 98.5
    assert (
        "| model=mlp label_smoothing=0 | mnist | mlp | 2 | 97.50 ± 0.71 | 97.50 ± 0.71 | -1.00 vs model=mlp |"
        in printed
    )
    written = page.read_text()
    section = written.removeprefix(whole)
    assert section.startswith(
        f"\n<!-- report section: {title} -->\n## {title}\n\nWritten by `python -m mnist_lab"
    )
    assert f"'section={title}' overwrite=true`" in section and printed in section

    # the section exists now: replaced only when told to, then once, not twice
    refused = run_cli(
        tmp_path,
        real_data_root,
        f"runs={recipes}",
        f"write={page}",
        f"section={title}",
        tool="mnist_lab.report",
    )
    assert refused.returncode == 1 and "section 'What each ingredient adds' exists" in refused.stderr
    assert page.read_text() == written
    report(f"runs={ingredients}", f"section={title}", "overwrite=true")
    assert page.read_text() == written
    # the page written whole again keeps the section
    report(f"runs={recipes}", "overwrite=true")
    assert page.read_text() == written


def test_the_ingredient_script_keeps_what_the_table_needs(tmp_path: Path, real_data_root: Path) -> None:
    """scripts/ingredients.sh as its usage line says, debug=fast added to each row: two rows, one seed."""
    env = cli_env(tmp_path, real_data_root) | {
        "OVERRIDES": "debug=fast",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    script = [str(REPO / "scripts" / "ingredients.sh"), "0", "mnist", "mnist_no_smoothing"]
    done = subprocess.run(script, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    kept = tmp_path / "results" / "ingredients"
    assert sorted(path.name for path in kept.rglob("*") if path.is_file()) == sorted(
        ["multirun.yaml", "results.json", "overrides.yaml", "config.yaml"] * 2
    )
    assert list((tmp_path / "outputs").rglob("*.ckpt"))  # the checkpoints stay in outputs/

    page = tmp_path / "RESULTS.md"
    section = ["write=RESULTS.md", "section=What each ingredient adds"]
    report = run_cli(tmp_path, real_data_root, f"runs={kept}", *section, tool="mnist_lab.report")
    assert report.returncode == 0, report.stderr[-2000:]
    row = next(line for line in page.read_text().splitlines() if line.startswith("| experiment=best_mnist l"))
    assert row.startswith("| experiment=best_mnist label_smoothing=0 debug=fast | mnist | convnet | 1 |")
    assert " vs experiment=best_mnist debug=fast |" in row
    unknown = subprocess.run([script[0], "0", "mnits"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert unknown.returncode == 2 and "no row 'mnits'; the rows:" in unknown.stderr


def test_report_without_runs_is_one_clear_error(tmp_path: Path, real_data_root: Path) -> None:
    for overrides, expected in (([f"runs={tmp_path}"], "no results.json under"), ([], "runs is required")):
        done = run_cli(tmp_path, real_data_root, *overrides, tool="mnist_lab.report")
        assert done.returncode == 1 and expected in done.stderr and "Traceback" not in done.stderr


def test_the_picture_has_a_dot_per_run_and_one_at_each_mean() -> None:
    runs = [
        {
            "dataset": "mnist",
            "configuration": "model=mlp",
            "test/acc": acc,
            "minutes": seconds * 5 / 60,
        }
        for acc, seconds in ((0.97, 2.0), (0.98, 3.0), (0.99, 4.0))
    ]
    runs.append(
        {
            "dataset": "fashion_mnist",
            "configuration": "x",
            "test/acc": 0.9,
            "minutes": 2,
        }
    )
    figure = accuracy_vs_time(runs)
    fashion, mnist = figure.axes
    assert (fashion.get_title(), mnist.get_title(), mnist.get_xscale()) == ("fashion_mnist", "mnist", "log")
    seeds, mean = (collection.get_offsets().flatten().tolist() for collection in mnist.collections)
    assert seeds == pytest.approx([10 / 60, 97, 15 / 60, 98, 20 / 60, 99])
    assert mean == pytest.approx([0.25, 98])
    assert [t.get_text() for t in mnist.get_legend().get_texts()] == ["model=mlp (3 seeds)"]
    assert fashion.collections[1].get_offsets().flatten().tolist() == pytest.approx([2, 90])
