"""`python -m mnist_lab.lr_find [overrides]`: a starting learning rate for a run, from Lightning's range test.

The composed run trains for `lr_find.num_training` steps while the learning rate grows from `min_lr` to
`max_lr` (Tuner.lr_find); the suggestion is where the loss falls fastest. It prints the override to use
and saves the loss curve as lr_find.png in its output dir (beside Hydra's log and .hydra/); the range
test's temporary checkpoint is removed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import matplotlib
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from mnist_lab.build import build_module, check_config, settle_precision, short_name
from mnist_lab.errors import UserError, one_line_errors
from mnist_lab.files import save_figure

log = logging.getLogger("mnist_lab")


def steepest_fall(results: dict[str, list[float]], skip_begin: int = 10, skip_end: int = 1) -> float | None:
    """The learning rate at which the loss falls fastest per decade of learning rate.

    Lightning 2.6's `suggestion()` takes the slope per unit of learning rate, which on the default
    exponential sweep picks the smallest rates (Lightning-AI/pytorch-lightning#21141).
    """
    loss = torch.tensor(results["loss"][skip_begin:-skip_end])
    lr = torch.tensor(results["lr"][skip_begin:-skip_end])
    finite = torch.isfinite(loss)
    if finite.sum() < 2:
        return None
    slope = torch.gradient(loss[finite], spacing=[lr[finite].log10()])[0]
    return lr[finite][slope.argmin()].item()


def find_lr(cfg: DictConfig) -> tuple[float, Path]:
    """The suggested learning rate, and the plot of loss against learning rate."""
    check_config(cfg)
    settle_precision(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        default_root_dir=output_dir,  # where the range test keeps its temporary checkpoint
        # the range test drives the loss up on purpose: no step reaches the module's divergence check
        log_every_n_steps=cfg.lr_find.num_training + 1,
    )
    finder = Tuner(trainer).lr_find(
        build_module(cfg), datamodule=instantiate(cfg.data), update_attr=False, **cfg.lr_find
    )
    suggestion = steepest_fall(finder.results) if finder is not None else None
    if suggestion is None:
        raise UserError(
            "the range test found no falling stretch of the loss to suggest from; "
            "widen it (lr_find.min_lr, lr_find.max_lr) or take more steps (lr_find.num_training)"
        )
    figure = finder.plot(suggest=False)
    ax = figure.axes[0]
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.3g}")
    ax.set_title(f"{cfg.data.name} · {short_name(cfg.model._target_)}: loss during the range test")
    ax.legend()
    plot = output_dir / "lr_find.png"
    save_figure(figure, plot, dpi=100)
    return suggestion, plot


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="lr_find")
def main(cfg: DictConfig) -> None:
    matplotlib.use("Agg")
    with one_line_errors():
        suggestion, plot = find_lr(cfg)
    log.info("loss against learning rate: %s", plot)
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("lr_find.")]
    print(f"suggested: optimizer.lr={suggestion:.3g}")
    print(f"train with: python -m mnist_lab {' '.join([*overrides, f'optimizer.lr={suggestion:.3g}'])}")


if __name__ == "__main__":
    main()
