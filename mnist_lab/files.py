"""Files a later step reads appear whole or not at all, and nothing the user has is replaced unasked.

Each file is written beside its destination under a hidden temporary name, flushed to disk and renamed
over the destination: a rename within a directory is atomic, so `kill -9`, a crash or a full disk at any
moment leaves the previous version (or no file), never half of one. A killed write can leave its hidden
`.NAME.*.part` file behind; nothing reads those.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from mnist_lab.errors import UserError


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write` with a binary file that becomes `path` only once it is complete and on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_figure(figure: Any, path: Path, **options: Any) -> None:
    """A matplotlib figure as an image file, its format from the file's suffix."""
    write_atomically(path, lambda f: figure.savefig(f, format=path.suffix.lstrip("."), **options))


def copy(source: str | Path, destination: str | Path) -> None:
    with open(source, "rb") as f:
        write_atomically(destination, lambda out: shutil.copyfileobj(f, out))


def refuse_existing(path: Path, overwrite: bool) -> None:
    """One line, before any work, when a file the user named exists and they did not say to replace it."""
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists and was left as it is; add overwrite=true to replace it")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, renaming each checkpoint into place from its own directory.

    Lightning's own writes to the system's temporary directory and moves the file over: a copy, not an
    atomic rename, wherever that directory is another file system (a tmpfs /tmp). Other storage (`s3://`
    and the like) keeps Lightning's writer."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        write_atomically(path, lambda f: torch.save(checkpoint, f))
