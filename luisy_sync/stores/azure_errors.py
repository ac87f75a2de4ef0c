"""The one place that turns Azure SDK / aiohttp / http1 failures into luisy_sync errors.

Messages are one line and never carry secrets: URL query strings (SAS tokens) are
cut, and any secret the store knows (account key, SAS token) is redacted verbatim.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from typing import Iterable, Mapping

import aiohttp
from azure.core import exceptions as az

from luisy_sync.errors import (AuthError, BlocksNotStaged, ContainerNotFound, NotFoundError,
                               PreconditionFailed, StoreError, TransientError)
from luisy_sync.stores.http1 import IncompleteBody

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_URL_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?'\"<>]*)\?[^\s'\"<>]*")
_SECRET_FIELDS = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|sig|Signature)=[^;&\s'\"]*")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` cut to its first line with URL queries, key fields and known secrets removed."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    for secret in secrets:
        if secret and len(secret) >= 8:
            line = line.replace(secret, "<redacted>")
    line = _URL_QUERY.sub(r"\1", line)
    return _SECRET_FIELDS.sub(r"\1=<redacted>", line)[:300]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_and_headers(exc: az.HttpResponseError) -> tuple[int | None, dict[str, str]]:
    response = getattr(exc, "response", None)
    headers: dict[str, str] = {}
    if response is not None:
        try:
            headers = {k.lower(): v for k, v in response.headers.items()}
        except Exception:  # a response without usable headers: status alone will do
            headers = {}
    return exc.status_code, headers


def translate(exc: BaseException, what: str, account_url: str,
              secrets: Iterable[str] = ()) -> BaseException:
    """The luisy_sync error for ``exc``, raised while doing ``what`` (e.g. "put 'a/b'").

    Exceptions that are not I/O failures (programming errors, cancellation) come back
    unchanged so that the caller re-raises them as they are.
    """
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, (aiohttp.ClientPayloadError, IncompleteBody)):
        return TransientError(f"{what}: the response from {account_url} was cut short "
                              f"({scrub(str(exc), secrets)}); the operation can be retried")
    if isinstance(exc, (az.ServiceRequestError, az.ServiceResponseError, az.IncompleteReadError,
                        aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)):
        detail = scrub(str(exc) or type(exc).__name__, secrets)
        timed_out = isinstance(exc, (asyncio.TimeoutError, az.ServiceResponseTimeoutError,
                                     az.ServiceRequestTimeoutError))
        return TransientError(f"{what}: cannot reach {account_url} ({detail}); check the network "
                              "and the endpoint, the operation can be retried", timed_out=timed_out)
    if isinstance(exc, az.ClientAuthenticationError) and exc.status_code is None:
        return AuthError(f"{what}: could not obtain credentials for {account_url} "
                         f"({scrub(str(exc), secrets)}); check the Azure login/identity settings")
    if not isinstance(exc, az.HttpResponseError):
        if isinstance(exc, az.AzureError):
            return StoreError(f"{what}: {scrub(str(exc), secrets)}")
        return exc
    status, headers = _status_and_headers(exc)
    if status is None:  # the response broke off before a status was usable (e.g. short body)
        return TransientError(f"{what}: the response from {account_url} was cut short "
                              f"({scrub(str(exc), secrets)}); the operation can be retried")
    raw = getattr(exc, "error_code", None) or headers.get("x-ms-error-code") or ""
    return translate_status(status, str(getattr(raw, "value", raw)), headers, what, account_url,
                            secrets, exc.reason or str(exc))


def translate_status(status: int, code: str, headers: Mapping[str, str], what: str,
                     account_url: str, secrets: Iterable[str] = (), detail: str = "") -> StoreError:
    """The luisy_sync error for an HTTP error answer: ``status``, its ``x-ms-error-code``
    (``code``, may be empty) and headers (lower-case keys or case-insensitive; Retry-After)."""
    tag = f"HTTP {status}" + (f" {code}" if code else "")
    if status in TRANSIENT_STATUS:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return TransientError(f"{what}: {account_url} answered {tag}; the operation can be retried",
                              status=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthError(f"{what}: credentials rejected by {account_url} ({tag}); check the account "
                         "name and key, SAS token (expiry, permissions) or identity role", status=status)
    if status == 404:
        if code == "ContainerNotFound":
            return ContainerNotFound(f"{what}: the container does not exist at {account_url}; "
                                     "create it or check the container name", status=404)
        return NotFoundError(f"{what}: not found ({tag})", status=404)
    if status == 412 or code in ("BlobAlreadyExists", "ConditionNotMet"):
        return PreconditionFailed(f"{what}: the condition failed ({tag}): the object changed or "
                                  "already exists", status=status)
    if code == "InvalidBlockList":
        return BlocksNotStaged(f"{what}: a block in the list was never staged (or already committed) "
                          f"({tag}); upload the blocks again", status=status)
    if code == "InvalidBlobOrBlock":
        return StoreError(f"{what}: the block was refused ({tag}); block ids of one object must "
                          "all have the same length (at most 64 bytes)", status=status)
    return StoreError(f"{what}: {account_url} answered {tag}: {scrub(detail or tag, secrets)}",
                      status=status)
