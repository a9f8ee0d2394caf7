"""A researcher's own network, in their own package outside mnist_lab (examples/tinyres), through every
command as README's "Add your own model" writes them."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lab import checkpoints
from mnist_lab.datasets import load_split
from tests.conftest import REPO, run_cli

EXAMPLE = REPO / "examples" / "tinyres"
OWN_MODEL = (f"hydra.searchpath=[file://{EXAMPLE}/conf]", "model=tinyres")
SHORT = ("trainer.limit_train_batches=5", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1")


def test_an_out_of_package_network_works_with_every_command(
    tmp_path: Path, real_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLE))  # where the user's package lives; run_cli adds the repo

    def command(*args: str, tool: str = "mnist_lab") -> str:
        done = run_cli(tmp_path, real_data_root, *args, tool=tool)
        assert done.returncode == 0, f"{tool}: {done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr
        return done.stdout + done.stderr

    command(*OWN_MODEL, *SHORT, "trainer.max_epochs=1", "hydra.run.dir=run")
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["model"] == "tinyresnet" and results["steps"] == 5 and results["tested"] == "best"

    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    assert {"test/confusion_matrix", "test/most_confident_mistakes"} <= set(events.Tags()["images"])
    assert (run / "projector_config.pbtxt").is_file()  # the features of its `head`, its last nn.Linear

    command(
        *OWN_MODEL,
        *SHORT,
        "trainer.max_epochs=2",
        "ckpt_path=run/checkpoints/last.ckpt",
        "hydra.run.dir=more",
    )
    resumed = json.loads((tmp_path / "more" / "results.json").read_text())
    assert resumed["steps"] == 10 and resumed["resumed_from"] == str(run / "checkpoints" / "last.ckpt")

    best = run / "checkpoints" / "best.ckpt"
    # the tools build a class from a checkpoint only if the command trusts it (README, "Trust")
    refused = run_cli(tmp_path, real_data_root, f"ckpt_path={best}", tool="mnist_lab.evaluate")
    assert refused.returncode == 1 and "add trust=[its.module]" in refused.stderr
    assert "asks to build 'my_models.TinyResNet' (model): refused" in refused.stderr
    trust = "trust=[my_models]"
    # in fp32, as the check below scores it (the run's precision is bf16 on a CPU that computes bf16)
    command(
        f"ckpt_path={best}", trust, "precision=32-true", "hydra.run.dir=evaluated", tool="mnist_lab.evaluate"
    )
    evaluated = json.loads((tmp_path / "evaluated" / "results.json").read_text())
    images, labels = load_split("mnist", str(real_data_root), train=False)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    restored = checkpoints.classifier(torch.load(best, weights_only=True)).eval()
    with torch.no_grad():
        scored = restored((images.unsqueeze(1).float() / 255 - 0.1307) / 0.3081).argmax(1) == labels
    assert evaluated["test/acc"] == pytest.approx(scored.float().mean().item(), abs=1e-4)  # all 10,000

    Image.fromarray(255 - images[0].numpy().astype(np.uint8)).resize((112, 112)).save(tmp_path / "digit.png")
    command(
        f"ckpt_path={best}", trust, "images=digit.png", "hydra.run.dir=predicted", tool="mnist_lab.predict"
    )
    (prediction,) = json.loads((tmp_path / "predicted" / "predictions.json").read_text())
    assert len(prediction["probs"]) == 10 and sum(prediction["probs"]) == pytest.approx(1, abs=1e-4)

    exported = command(
        f"ckpt_path={best}", trust, "format=onnx", "hydra.run.dir=exported", tool="mnist_lab.export"
    )
    assert (tmp_path / "exported" / "model.onnx").is_file()
    assert float(exported.split("max |logit difference| = ")[1].split()[0]) < 1e-3

    command(f"ckpt_path={best}", trust, "samples=300", "hydra.run.dir=viz", tool="mnist_lab.viz")
    assert {"pca_features.png", "tsne_features.png"} <= {p.name for p in (tmp_path / "viz").iterdir()}
