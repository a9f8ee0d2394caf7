"""Every command in README.md, run as a user types it: README and code cannot drift apart.

Placeholders are filled with a real run, sweep and images; training runs are shortened with limits that
the command itself does not set. Commands that need a GPU are composed (`--cfg job`), not run; the few
that this suite cannot run are listed in NOT_RUN with the test or CI step that runs them.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.conftest import REPO

README = REPO / "README.md"
FAST = {
    "trainer.max_epochs": "1",
    "trainer.limit_train_batches": "2",
    "trainer.limit_val_batches": "1",
    "trainer.limit_test_batches": "1",
}
LIMITS = {  # per tool, added unless the command sets them
    "mnist_lab": FAST,
    "mnist_lab.lr_find": {"lr_find.num_training": "30"},
    "mnist_lab.tune": FAST | {"hparams_search.n_trials": "2"},
    "mnist_lab.viz": {"samples": "300"},
}
NOT_RUN = {
    "make test CPU=avx2": "the suite again; .ci/run runs the tests that follow the CPU kind this way",
    "make test": ".ci/run runs it",
    "make lint": ".ci/run runs it",
    "make bench": "minutes on a quiet machine; tests/test_bench.py runs each benchmark script, briefly",
    "export MNIST_LAB_DATA_DIR=": "the suite sets it for every command",
    "sudo ": "tests/test_slurm.py and .ci/run bring up the local SLURM cluster",
    "hydra/launcher=slurm_cpu": "tests/test_slurm.py submits these to the local SLURM cluster",
    "examples/tinyres": "tests/test_own_model.py runs the example's commands, in order",
    "outputs/tinyres": "tests/test_own_model.py runs the example's commands, in order",
    "mnist_lab.serve": "it serves until stopped; tests/test_serve.py serves the page and draws on it",
}
NEEDS_GPU = ("trainer.accelerator=gpu", "trainer=ddp ", "hydra/launcher=slurm ")
PLACEHOLDERS = {
    "outputs/runs/<run>": "outputs/runs/readme",
    "outputs/multiruns/<sweep>": "outputs/multiruns/readme",
    "CKPT": "outputs/runs/readme/checkpoints/best.ckpt",
    "runs=DIR": "runs=outputs/multiruns/readme",
    "images=PATH": "images=photo.jpg",
}


def readme_commands() -> list[str]:
    """The commands of README's bash blocks, and those of its tool table."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command:
                commands.append(" ".join(command.split()))
    commands += re.findall(r"^\| \w+ \| `(python -m [^`]+)`", text, re.M)
    return list(dict.fromkeys(commands))


def shortened(words: list[str]) -> list[str]:
    """The command with the FAST limits it does not set itself."""
    limits = {} if "--cfg" in words else LIMITS.get(words[2], {})
    return words + [
        f"{key}={value}" for key, value in limits.items() if not any(w.startswith(f"{key}=") for w in words)
    ]


def first_job(override: str) -> str:
    """`seed=0,1,2` → `seed=0`: a sweep's first job, which `--cfg job` can compose."""
    key, _, values = override.partition("=")
    return f"{key}={values.split(',')[0]}" if values and "[" not in values else override


@pytest.fixture(scope="module")
def trained(real_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short MLP run and a 2-job sweep, for the placeholders."""
    base = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "MNIST_LAB_DATA_DIR": str(real_data_root)}
    short = [f"{key}={value}" for key, value in FAST.items()]
    for where in ("hydra.run.dir=runs/readme", "hydra.sweep.dir=multiruns/readme"):
        sweep = ["-m", "seed=0,1"] if "sweep" in where else []
        command = [sys.executable, "-m", "mnist_lab", *sweep, *short, where, "logger=none"]
        subprocess.run(command, cwd=base, env=env, check=True, capture_output=True)
    return base


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs_as_written(
    command: str, trained: Path, real_data_root: Path, tmp_path: Path
) -> None:
    skip = next((reason for start, reason in NOT_RUN.items() if start in command), None)
    if skip:
        pytest.skip(skip)
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    (tmp_path / "outputs" / "runs").mkdir(parents=True)
    (tmp_path / "outputs" / "multiruns").mkdir()
    (tmp_path / "outputs" / "runs" / "readme").symlink_to(trained / "runs" / "readme")
    (tmp_path / "outputs" / "multiruns" / "readme").symlink_to(trained / "multiruns" / "readme")
    (tmp_path / "scans").mkdir()
    for name in ("photo.jpg", "scans/page.png"):
        image = Image.new("L", (120, 120), 235)
        ImageDraw.Draw(image).line([(60, 15), (60, 105)], fill=20, width=12)  # a "1"
        image.save(tmp_path / name)

    env = {**os.environ, "MNIST_LAB_DATA_DIR": str(real_data_root), "PYTHONPATH": str(REPO)}
    env.pop("MNIST_LAB_OUTPUT_DIR", None)
    words = shlex.split(command)
    if any(flag in command + " " for flag in NEEDS_GPU):  # composed, not run: this machine has no GPU
        words = words[:3] + [first_job(w) for w in words[3:] if w != "-m"] + ["--cfg", "job"]
    if words[0] == "make":  # in the repository, writing under tmp_path
        env["MNIST_LAB_OUTPUT_DIR"] = str(tmp_path / "outputs")
        words = [w.replace("=outputs/", f"={tmp_path}/outputs/") for w in words]
        if words[1] == "train":
            words.append("ARGS=" + " ".join(shortened(["python", "-m", "mnist_lab"])[3:]))
        words = [*words[:1], "-C", str(REPO), *words[1:]]
    else:
        assert words[:2] == ["python", "-m"], command
        words = [sys.executable, *shortened(words)[1:]]
    done = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert "error:" not in done.stderr
