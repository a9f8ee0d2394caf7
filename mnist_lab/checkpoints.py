"""Checkpoints: how the tools find, read and restore them. A checkpoint is data, never code.

Every checkpoint carries the run's resolved config (plain containers; callbacks.RunRecord writes it), so
the tools rebuild the dataset and the network from the checkpoint alone. Loading goes through
torch.load(weights_only=True), so no pickled code runs, and before anything is built every `_target_`
in the parts a tool builds (BUILT) must name a class that the tool trusts: the project's networks and
datamodule and torch's optimizers and schedulers (TRUSTED), plus what the user trusts on their side
(`trust=[my_models]`, or the run config when resuming) — never what the checkpoint says of itself."""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

from mnist_lab import build
from mnist_lab.datasets import DATASETS
from mnist_lab.errors import ConfigError, UserError
from mnist_lab.module import Classifier

log = logging.getLogger("mnist_lab")
# A class name, or a module whose own top-level classes are all trusted.
TRUSTED = (
    "mnist_lab.models.MLP",
    "mnist_lab.models.CNN",
    "mnist_lab.models.ConvNet",
    "mnist_lab.data.MNISTDataModule",
    "mnist_lab.augment.Augment",
    "torch.optim",
    "torch.optim.lr_scheduler",
)
# Where in a run config the tools build objects, and what each must be; other targets inside these
# sections (a layer in a kwarg) must be trusted classes too. The rest of a config is only read.
BUILT = {
    "model": torch.nn.Module,
    "optimizer": torch.optim.Optimizer,
    "scheduler.scheduler": torch.optim.lr_scheduler.LRScheduler,
    "data": L.LightningDataModule,
}
SECTIONS = tuple(dict.fromkeys(key.split(".")[0] for key in BUILT))


class CheckpointError(UserError):
    """A checkpoint that cannot be read, is refused, or does not fit the run."""


class UnreadableCheckpoint(CheckpointError):
    """A file torch.load cannot read: truncated, corrupt, or not a checkpoint."""


def walk(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every node of a config, at any depth, with where it sits (`model.block`, `data.sizes[0]`)."""
    yield where, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from walk(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}")


def built_targets(config: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The `_target_`s a tool would build from a run config (BUILT's sections), with where they sit."""
    for section in SECTIONS:
        for where, node in walk(build.as_containers(config.get(section)), section):
            if isinstance(node, dict) and "_target_" in node:
                yield where, node["_target_"]


def named_by(config: Mapping[str, Any]) -> list[str]:
    """The classes a run config builds: what its own checkpoints may name when it resumes."""
    return [target for _, target in built_targets(config)]


def refusal(target: Any, where: str, trust: Iterable[str]) -> str | None:
    """Why `target` may not be built at `where`; None if it may. Only a trusted module is imported."""
    if not isinstance(target, str):
        return "it is not a class name"
    module, _, name = target.rpartition(".")
    if target not in trust and module not in trust:
        return "this command does not trust it"
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        return f"it is trusted but cannot be imported ({err}; is its package on PYTHONPATH?)"
    required = BUILT.get(where, object)
    if not inspect.isclass(found) or not issubclass(found, required):
        return f"it is not a {required.__module__}.{required.__qualname__} class"
    return None


def check_trusted(checkpoint: dict[str, Any], path: Path, trust: Iterable[str] = ()) -> None:
    """Refuse, before anything is imported or built, a checkpoint whose config would build anything but
    trusted classes (TRUSTED and `trust`)."""
    trust = {*TRUSTED, *trust}
    config = checkpoint["config"]
    for section in ("model", "optimizer", "data"):
        if not isinstance(config.get(section), dict) or "_target_" not in config[section]:
            raise CheckpointError(f"{path} is not an mnist_lab checkpoint (its config names no {section})")
    # a stored config is resolved; a `${...}` in it was put there by hand, and resolving one (as building
    # does: `${oc.decode:...}`) could make new targets
    for where, node in walk(config, "config"):
        if isinstance(node, str) and "${" in node:
            raise CheckpointError(
                f"{path}: {where} holds an interpolation (${{...}}): refused, nothing was built"
            )
    for where, target in built_targets(config):
        reason = refusal(target, where, trust)
        if reason:
            raise CheckpointError(
                f"{path} asks to build {target!r} ({where}): refused, {reason}; nothing was built. "
                "A class of your own: add trust=[its.module] (or the class) to the command"
            )


def load(path: str | Path, trust: Iterable[str] = ()) -> dict[str, Any]:
    """The checkpoint's contents, or one clear error if it is missing, truncated, not ours or would build
    what the command does not trust (check_trusted)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails in many ways on a damaged file; all mean the same here
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}"
        raise UnreadableCheckpoint(
            f"{path} is not a readable checkpoint ({reason}); it may be truncated or corrupt. "
            "Use another one, e.g. checkpoints/last.ckpt or checkpoints/best.ckpt of the same run."
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("config"), dict):
        raise CheckpointError(f"{path} is not an mnist_lab checkpoint (it has no run config)")
    if "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not an mnist_lab checkpoint (it has no weights)")
    check_trusted(checkpoint, path, trust)
    return checkpoint


def load_last(output_root: str | Path, trust: Iterable[str] = ()) -> tuple[Path, dict[str, Any]]:
    """`ckpt_path=last`: the newest last.ckpt under the output root's runs that reads whole; a damaged
    one (cut off by a writer that was not atomic, or corrupted on disk) is passed over with a warning."""
    candidates = sorted(
        Path(output_root).glob("runs/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for path in candidates:
        try:
            return path, load(path, trust)
        except UnreadableCheckpoint:
            log.warning("skipping %s: it is not whole", path)
    raise CheckpointError(
        f"ckpt_path=last: no whole runs/*/checkpoints/last.ckpt under {Path(output_root).resolve()}"
    )


def check_compatible(checkpoint: dict[str, Any], data: str, model: str, path: Path) -> None:
    """Resuming needs the same dataset and network as the checkpoint's run."""
    trained = checkpoint["config"]
    was = (trained["data"]["name"], trained["model"]["_target_"])
    if was != (data, model):
        raise ConfigError(
            f"{path} was trained on data={was[0]} with {was[1]}; this run asks for data={data} with {model}. "
            "Resume with the same data and model options, or start a new run without ckpt_path."
        )


def classifier(checkpoint: dict[str, Any]) -> Classifier:
    """The trained LightningModule, rebuilt from the run config the checkpoint carries: what evaluate and
    the notebooks test."""
    module = build.build_module(checkpoint["config"])
    module.load_state_dict(checkpoint["state_dict"])
    return module


def datamodule(checkpoint: dict[str, Any], root: str | None) -> L.LightningDataModule:
    """The checkpoint's dataset, split and normalization, read from this command's data root. Without its
    training augmentation: the tools only test (checkpoints written before conf/augment/ name it with the
    flags `augment` and `hflip`, which the data module no longer takes)."""
    data = {
        key: value for key, value in checkpoint["config"]["data"].items() if key not in ("augment", "hflip")
    }
    return instantiate(data, **({"root": root} if root else {}))


def normalization(checkpoint: dict[str, Any]) -> tuple[float, float]:
    """The mean and std the network was trained with: what a picture is normalized by before it."""
    data = checkpoint["config"]["data"]
    return DATASETS[data["name"]].normalization(data["normalize"])


def network(checkpoint: dict[str, Any]) -> torch.nn.Module:
    """The trained network as a plain nn.Module in eval mode: what predict, export and viz run."""
    net = build.network(checkpoint["config"]["model"])
    prefix = "net."
    net.load_state_dict(
        {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    )
    return net.eval()
