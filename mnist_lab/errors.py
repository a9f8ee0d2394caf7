"""Errors that are the user's to fix, and the one front end every command reports them through: one
`error:` line and exit code 1, never a traceback (a traceback means a bug)."""

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf.errors import MissingMandatoryValue

log = logging.getLogger("mnist_lab")


class UserError(Exception):
    """A problem with the user's data, files or settings; the message names it and the fix."""


class ConfigError(UserError, ValueError):
    """A setting that cannot work, found before any data is loaded."""


class DataError(UserError):
    """Dataset files that are missing, unreadable or corrupt."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; training stops and keeps the checkpoints written before."""


def user_message(err: BaseException) -> str | None:
    """The line a user's mistake is reported as; None for anything else (a bug keeps its traceback)."""
    if isinstance(err, InstantiationException):  # a config value the target class rejects
        return str(err.__cause__ or err)
    if isinstance(err, UserError | MisconfigurationException):  # Lightning's word for a bad flag
        return str(err)
    if isinstance(err, MissingMandatoryValue):
        return f"{err.full_key} is required (add {err.full_key}=...; --help lists the settings)"
    return None


@contextmanager
def one_line_errors(record: Callable[[str], None] | None = None) -> Iterator[None]:
    """Report a user error as one `error:` line and exit 1; with `record` (a sweep's job), hand the message
    to it and log it instead, so that the sweep goes on. SIGTERM always ends the command."""
    try:
        yield
    except SIGTERMException:
        sys.exit("error: stopped by SIGTERM (the checkpoint it saved is named above)")
    except Exception as err:
        message = user_message(err)
        if message is None:
            raise
        if record is None:
            sys.exit(f"error: {message}")
        record(message)
        log.error("error: %s", message)
