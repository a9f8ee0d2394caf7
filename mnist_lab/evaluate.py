"""`python -m mnist_lab.evaluate ckpt_path=CKPT`: a checkpoint's test metrics, printed and in results.json,
so that a number in a table can be checked against the weights that made it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from mnist_lab import checkpoints, hardware
from mnist_lab.errors import one_line_errors
from mnist_lab.files import write_json
from mnist_lab.results import results

log = logging.getLogger("mnist_lab")


def evaluate(
    ckpt_path: str | Path,
    data_root: str | None = None,
    accelerator: str = "auto",
    precision: str | None = None,
    trust: Sequence[str] = (),
) -> dict[str, Any]:
    checkpoint = checkpoints.load(ckpt_path, trust)
    module = checkpoints.classifier(checkpoint)
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
        checkpoint=str(Path(ckpt_path).resolve()),
        epoch=checkpoint["epoch"],
    )


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        record = evaluate(cfg.ckpt_path, cfg.data.root, cfg.accelerator, cfg.precision, cfg.trust)
    output_dir = Path(cfg.paths.output_dir)
    write_json(output_dir / "results.json", record)
    print(f"test/acc {record['test/acc']:.4f} · test/loss {record['test/loss']:.4f} · {record['checkpoint']}")
    log.info("results in %s", output_dir / "results.json")


if __name__ == "__main__":
    main()
