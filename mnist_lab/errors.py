"""Errors that are the user's to fix: the command-line tools print their message as one line and exit 1."""


class UserError(Exception):
    """A problem with the user's data, files or settings; the message names it and the fix."""


class ConfigError(UserError, ValueError):
    """A setting that cannot work, found before any data is loaded."""


class DataError(UserError):
    """Dataset files that are missing, unreadable or corrupt."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; training stops and keeps the checkpoints written before."""
