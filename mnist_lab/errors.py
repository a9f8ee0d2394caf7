"""Errors that are the user's to fix: the command-line tools print their message as one line and exit 1."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf.errors import MissingMandatoryValue


class UserError(Exception):
    """A problem with the user's data, files or settings; the message names it and the fix."""


class ConfigError(UserError, ValueError):
    """A setting that cannot work, found before any data is loaded."""


class DataError(UserError):
    """Dataset files that are missing, unreadable or corrupt."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; training stops and keeps the checkpoints written before."""


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A tool's user errors (and a required setting left out) end the command with one line, not a
    traceback."""
    try:
        yield
    except UserError as err:
        sys.exit(f"error: {err}")
    except MissingMandatoryValue as err:
        sys.exit(f"error: {err.full_key} is required (add {err.full_key}=...; --help lists the settings)")
