"""`python -m mnist_lab.evaluate ckpt_path=CKPT`: a checkpoint's test metrics, printed and in results.json,
so that a number in a table can be checked against the weights that made it.

`'ckpt_path=[a.ckpt,b.ckpt]'` tests the ensemble of several checkpoints, and `tta=flip|shift` each image
seen several ways: both average the probabilities, and report apart from any single model's number."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

from mnist_lab import checkpoints, hardware
from mnist_lab.errors import ConfigError, one_line_errors
from mnist_lab.files import write_json
from mnist_lab.results import results

log = logging.getLogger("mnist_lab")


def shifted(x: Tensor, dy: int, dx: int) -> Tensor:
    """The images moved by (dy, dx) pixels, the edge pixels repeated into the gap."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]


# Test-time augmentation: the views of each image whose probabilities are averaged
VIEWS = {
    "none": [lambda x: x],
    "flip": [lambda x: x, lambda x: x.flip(-1)],  # clothes are left-right symmetric, digits are not
    "shift": [lambda x: x, *(lambda x, d=d: shifted(x, *d) for d in ((1, 0), (-1, 0), (0, 1), (0, -1)))],
}


class Ensemble(torch.nn.Module):
    """The mean of the members' probabilities over the views, as log-probabilities: the classifier's
    cross-entropy and accuracy take them as they take logits (log_softmax leaves them as they are)."""

    def __init__(self, nets: Sequence[torch.nn.Module], tta: str) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)
        self.views = VIEWS[tta]

    def forward(self, x: Tensor) -> Tensor:
        probs = [net(view(x)).float().softmax(-1) for net in self.nets for view in self.views]
        return torch.stack(probs).mean(0).log()


def evaluate(
    ckpt_path: str | Path | Sequence[str | Path],
    data_root: str | None = None,
    accelerator: str = "auto",
    precision: str | None = None,
    trust: Sequence[str] = (),
    tta: str = "none",
) -> dict[str, Any]:
    if tta not in VIEWS:
        raise ConfigError(f"tta={tta}: choose one of {', '.join(VIEWS)}")
    paths = [Path(ckpt_path)] if isinstance(ckpt_path, str | Path) else [Path(p) for p in ckpt_path]
    if not paths:
        raise ConfigError("ckpt_path=[]: name at least one checkpoint")
    members = [checkpoints.load(path, trust) for path in paths]
    checkpoint = members[0]  # its data, precision and loss settings serve the ensemble
    datasets = {(m["config"]["data"]["name"], m["config"]["data"]["normalize"]) for m in members}
    if len(datasets) > 1:
        raise ConfigError(
            f"the checkpoints were trained on different data ({', '.join(map(str, sorted(datasets)))}); "
            "an ensemble averages models of one dataset and normalization"
        )
    module = checkpoints.classifier(checkpoint)
    if len(members) > 1 or tta != "none":
        module.net = Ensemble([module.net, *(checkpoints.network(m) for m in members[1:])], tta)
    if precision is None:
        precision, why = hardware.replay_precision(checkpoint["config"]["trainer"]["precision"], accelerator)
    else:
        precision, why = hardware.choose_precision(precision, accelerator)
    log.info("precision %s (%s)", precision, why)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    tested = trainer.test(module, datamodule=checkpoints.datamodule(checkpoint, data_root), verbose=False)[0]
    return results(
        tested,
        checkpoint["config"],
        module.net,
        trainer,
        checkpoint=str(paths[0].resolve()) if len(paths) == 1 else [str(p.resolve()) for p in paths],
        epoch=checkpoint["epoch"] if len(paths) == 1 else [m["epoch"] for m in members],
        tta=tta,
    )


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        ckpt_path = cfg.ckpt_path if isinstance(cfg.ckpt_path, str) else list(cfg.ckpt_path)
        record = evaluate(ckpt_path, cfg.data.root, cfg.accelerator, cfg.precision, cfg.trust, cfg.tta)
    output_dir = Path(cfg.paths.output_dir)
    write_json(output_dir / "results.json", record)
    what = (
        record["checkpoint"]
        if isinstance(record["checkpoint"], str)
        else f"{len(record['checkpoint'])} checkpoints"
    )
    print(
        f"test/acc {record['test/acc']:.4f} · test/loss {record['test/loss']:.4f} · {what}"
        + (f" · tta={cfg.tta}" if cfg.tta != "none" else "")
    )
    log.info("results in %s", output_dir / "results.json")


if __name__ == "__main__":
    main()
