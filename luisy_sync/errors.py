"""The one error tree of luisy_sync.

    SyncError
    ├── ConfigError            bad store URL, missing/invalid credentials settings
    ├── UnsafePathError        a name that would escape the destination (``..``, absolute, ``\\``)
    ├── IntegrityError         content does not match its digest
    │   └── ShortReadError     a ranged read returned fewer bytes than asked (retryable)
    ├── ManifestError          a manifest object that cannot be parsed
    ├── TransferError          one file failed for good (after retries); names the file
    │   └── SyncFailed         a push/pull finished with failed files; carries .report
    └── StoreError             anything a store said
        ├── NotFoundError
        ├── PreconditionFailed if-match / if-none-match condition not met
        ├── AuthError          credentials rejected (401/403)
        ├── ContainerNotFound  the container does not exist
        ├── BlocksNotStaged    a commit named a block that is not (or no longer) staged
        └── TransientError     worth retrying (connection reset, 408/429/5xx)

Every message is one line, says what was wrong and what to do, and never carries a
secret (account keys, SAS tokens, connection strings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from luisy_sync.report import Report


def one_line(error: BaseException, *, with_type: bool = True) -> str:
    """The first line of an error's message, as ``Type: message`` (or the message alone with
    ``with_type=False``); the type name when there is no message."""
    lines = str(error).strip().splitlines()
    first, name = (lines[0] if lines else ""), type(error).__name__
    if not first:
        return name
    return f"{name}: {first}" if with_type else first


class SyncError(Exception):
    """Base of every error luisy_sync raises on purpose."""


class ConfigError(SyncError):
    """The configuration (store URL, environment, credentials settings) is unusable."""


class UnsafePathError(SyncError):
    """A relative name that is absolute, contains ``..`` or a backslash."""


class IntegrityError(SyncError):
    """Bytes read or written do not match the expected digest or size."""


class ShortReadError(IntegrityError):
    """A ranged read returned fewer bytes than requested (a truncated response)."""

    retryable = True


class ManifestError(SyncError):
    """A manifest object exists but cannot be understood; ``reason`` says why, in a few words."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


class TransferError(SyncError):
    """A file could not be transferred after all retries."""

    def __init__(self, path: str, cause: BaseException | str):
        self.path = path
        self.cause = cause
        super().__init__(f"{path}: {cause}")


class SyncFailed(TransferError):
    """A push or pull finished but some files failed; ``.report`` holds the details."""

    def __init__(self, message: str, report: Report | None = None, path: str = "",
                 cause: BaseException | str = ""):
        super().__init__(path, cause)
        self.report = report
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])


class StoreError(SyncError):
    """A store operation failed."""

    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None, timed_out: bool = False):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.timed_out = timed_out
        """No answer came in time (the server may be overloaded)."""


class NotFoundError(StoreError):
    """The object does not exist."""


class PreconditionFailed(StoreError):
    """A conditional write lost: the object changed (if-match) or exists (if-none-match)."""


class AuthError(StoreError):
    """The store rejected the credentials."""


class ContainerNotFound(StoreError):
    """The container (or local store root) does not exist."""


class BlocksNotStaged(StoreError):
    """A block commit named a block that is not staged: never staged, expired, or
    discarded by another writer's commit of the same name. Stage the blocks again."""


class TransientError(StoreError):
    """A failure that may pass: connection problems, 408, 429, 500, 502, 503, 504."""

    retryable = True
