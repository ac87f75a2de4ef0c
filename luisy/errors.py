"""The root of luisy's own errors: each one is reported to the user as one line.

``exit_code`` is what the ``luisy`` command exits with for the error (2: a usage or
input problem found before anything ran, 1: the cloud failed).
"""

from __future__ import annotations

from luisy_sync.errors import ManifestError, SyncError, one_line


class LuisyError(Exception):
    """A problem luisy reports as one line (no traceback, no secrets)."""

    exit_code = 2


class CliError(LuisyError):
    """A usage problem of the ``luisy`` command (flags, module, task, parameters)."""


class ConfigError(LuisyError, ValueError):
    """A luisy setting is missing or unusable (a ValueError, as in luisy 1.4.7)."""


class CloudError(LuisyError):
    """A cloud problem reported to the user as one line (no secrets in the message)."""

    exit_code = 1


class CloudHashError(CloudError):
    """A cloud hash file exists but cannot be used."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"the cloud hash file {where} is corrupt ({reason}); nothing was changed: "
                         f"fix or delete it")
        self.where = where
        self.reason = reason


class CorruptCloudHash(ManifestError):
    """The engine-level form of :class:`CloudHashError`, raised inside coroutines; the
    cloud session turns it into a CloudHashError."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}", reason)
        self.where = where


class NotRecorded(SyncError):
    """Uploaded content could not be named in the cloud hash file (raised inside
    coroutines; the cloud session reports it as a CloudError)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"uploaded content could not be recorded in the cloud hash file: "
                         f"{one_line(cause, with_type=False)}")
