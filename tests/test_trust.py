"""A checkpoint is data, never code: crafted checkpoints that name code to run are refused, through every
command that reads one, with one `error:` line, before anything is built; nothing is written or changed
outside the command's own run directory."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from mnist_lab import checkpoints
from tests.conftest import cli_env

CANARY_TEXT = b"a file the user has\n"


def hostile_configs(canary: Path, marker: Path) -> dict[str, tuple[str, Any, str]]:
    """name: (config section, what it is replaced by, the target the error must name)."""
    mlp = {"_target_": "mnist_lab.models.MLP", "hidden": 512, "dropout": 0.2, "num_classes": 10}
    opener = {"_target_": "builtins.open", "_args_": [str(canary), "w"]}
    return {
        "builtins.open": ("model", opener, "builtins.open"),
        "subprocess.run": (
            "model",
            {"_target_": "subprocess.run", "_args_": [["touch", str(marker)]]},
            "subprocess.run",
        ),
        "os.system": ("optimizer", {"_target_": "os.system", "_args_": [f"touch {marker}"]}, "os.system"),
        "in a kwarg": ("model", {**mlp, "hidden": opener}, "builtins.open"),
        "_partial_": ("optimizer", {**opener, "_partial_": True}, "builtins.open"),
        "not a network": (
            "model",
            {"_target_": "mnist_lab.files.write_text", "_args_": [str(canary), "gone"]},
            "mnist_lab.files.write_text",
        ),
        "a torch.nn class": (
            "model",
            {"_target_": "torch.nn.Linear", "in_features": 784, "out_features": 10},
            "torch.nn.Linear",
        ),
        "through a trusted module": (
            "scheduler",
            {"scheduler": {"_target_": "torch.optim.optimizer.torch.save", "_args_": [{}, str(canary)]}},
            "torch.optim.optimizer.torch.save",
        ),
        "not a scheduler": (
            "scheduler",
            {"scheduler": {"_target_": "torch.optim.SGD", "params": [], "lr": 0.1}},
            "torch.optim.SGD",
        ),
        "interpolation": (
            "model",
            {**mlp, "hidden": "${oc.decode:'{_target_: builtins.open}'}"},
            "interpolation",
        ),
    }


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory, real_data_root: Path) -> dict[str, Any]:
    """A checkpoint written by a real (five-step) run."""
    tmp = tmp_path_factory.mktemp("genuine")
    done = subprocess.run(
        [sys.executable, "-m", "mnist_lab", "debug=fast", f"hydra.run.dir={tmp / 'run'}"],
        env=cli_env(tmp, real_data_root),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return torch.load(tmp / "run" / "checkpoints" / "last.ckpt", weights_only=True)


def craft(genuine: dict[str, Any], path: Path, section: str, node: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**genuine, "config": {**genuine["config"], section: node}}, path)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_every_hostile_config_is_refused_before_anything_is_built(genuine: dict, tmp_path: Path) -> None:
    canary, marker = tmp_path / "canary.txt", tmp_path / "marker"
    canary.write_bytes(CANARY_TEXT)
    assert checkpoints.load(craft(genuine, tmp_path / "genuine.ckpt", "seed", 0))["epoch"] == 0
    for name, (section, node, target) in hostile_configs(canary, marker).items():
        path = craft(genuine, tmp_path / f"{name}.ckpt", section, node)
        with pytest.raises(checkpoints.CheckpointError) as refused:
            checkpoints.load(path)
        message = str(refused.value)
        assert target in message and str(path) in message and "\n" not in message, name
    assert canary.read_bytes() == CANARY_TEXT and not marker.exists()


TOOLS = {
    "predict": ("mnist_lab.predict", "ckpt_path={ckpt}", "images={image}"),
    "evaluate": ("mnist_lab.evaluate", "ckpt_path={ckpt}"),
    "export": ("mnist_lab.export", "ckpt_path={ckpt}"),
    "viz": ("mnist_lab.viz", "ckpt_path={ckpt}", "samples=50"),
    "resume by path": ("mnist_lab", "ckpt_path={ckpt}"),
    "resume by last": ("mnist_lab", "ckpt_path=last"),
}
# every crafted config through predict; each other command with one of them (all go through
# checkpoints.load, which the in-process test above drives with each)
CASES = [("predict", name) for name in hostile_configs(Path(), Path())] + [
    ("evaluate", "builtins.open"),
    ("export", "_partial_"),
    ("viz", "in a kwarg"),
    ("resume by path", "os.system"),
    ("resume by last", "subprocess.run"),
]


@pytest.mark.parametrize(("tool", "case"), CASES)
def test_a_crafted_checkpoint_is_one_error_line_and_changes_nothing(
    genuine: dict, real_data_root: Path, tmp_path: Path, tool: str, case: str
) -> None:
    canary, marker = tmp_path / "canary.txt", tmp_path / "marker"
    canary.write_bytes(CANARY_TEXT)
    Image.new("L", (28, 28), 255).save(tmp_path / "digit.png")
    section, node, target = hostile_configs(canary, marker)[case]
    # `last` finds it where training keeps its runs
    ckpt = craft(genuine, tmp_path / "out" / "runs" / "shared" / "checkpoints" / "last.ckpt", section, node)
    before = tree(tmp_path)
    module, *overrides = TOOLS[tool]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            *(o.format(ckpt=ckpt, image=tmp_path / "digit.png") for o in overrides),
        ],
        cwd=tmp_path,
        env=cli_env(tmp_path, real_data_root),
        capture_output=True,
        text=True,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr[-3000:]
    assert target in errors[0] and "refused" in errors[0] and "Traceback" not in done.stderr
    assert canary.read_bytes() == CANARY_TEXT and not marker.exists()
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    (run_dir,) = {Path(*Path(name).parts[:3]) for name in after.keys() - before.keys()}
    assert run_dir.parts[:2] == ("out", "runs" if module == "mnist_lab" else module.split(".")[-1])


def test_a_class_the_user_trusts_is_built(genuine: dict, real_data_root: Path, tmp_path: Path) -> None:
    """trust=[...] on the command line lets a checkpoint name a class the project does not know; the
    checkpoint itself cannot add to it."""
    (tmp_path / "my_nets.py").write_text("from mnist_lab.models import MLP\n\n\nclass Wide(MLP):\n    pass\n")
    config = {**genuine["config"]["model"], "_target_": "my_nets.Wide"}
    ckpt = craft(genuine, tmp_path / "wide.ckpt", "model", config)
    env = cli_env(tmp_path, real_data_root)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    for trust, code in (("trust=[]", 1), ("trust=[my_nets]", 0), ("trust=[my_nets.Wide]", 0)):
        done = subprocess.run(
            [sys.executable, "-m", "mnist_lab.evaluate", f"ckpt_path={ckpt}", trust],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == code, done.stderr[-2000:]
    evaluated = [json.loads(p.read_text()) for p in (tmp_path / "out" / "evaluate").glob("*/results.json")]
    assert [result["model"] for result in evaluated] == ["wide", "wide"]
