"""What a user gave to reach Azure Blob Storage, resolved: the endpoint, the container and
prefix, the credential, and the secrets no message may show.

``resolve_credentials`` takes one of: a connection string (account key or SAS); a SAS URL
(its container, and the path below it as the prefix); an account URL with a credential (an
account key string, an ``AzureNamedKeyCredential``, a SAS string, or an async
TokenCredential); or an account URL alone, then azure-identity's ``DefaultAzureCredential``
(``owned``: the caller closes it). Malformed input is one ConfigError line that names what
to fix and never the secret.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential

from luisy_sync.errors import ConfigError

__all__ = ["AzureCredentials", "resolve_credentials"]


@dataclass
class AzureCredentials:
    """The resolved inputs of an AzureBlobStore."""

    account_url: str
    container: str
    prefix: str
    credential: Any
    secrets: list[str] = field(default_factory=list)
    """Keys, SAS tokens: scrubbed from every message."""
    owned: Any = None
    """A credential made here (DefaultAzureCredential), to be closed with the store."""


def resolve_credentials(container: str | None, prefix: str = "", *, account_url: str | None = None,
                        credential: Any = None, connection_string: str | None = None,
                        sas_url: str | None = None) -> AzureCredentials:
    """The endpoint, container, prefix, credential and secrets of one way of signing in
    (see the module docstring); a SAS URL's container and path fill ``container`` and an
    empty ``prefix``. Without a container in the end, a ConfigError."""
    secrets: list[str] = []
    owned: Any = None
    if connection_string:
        fields = _parse_connection_string(connection_string)
        account_url = _endpoint_from_connection_string(fields)
        if fields.get("accountkey"):
            _check_key(fields["accountkey"])
            name = fields.get("accountname") or ""
            credential = AzureNamedKeyCredential(name, fields["accountkey"])
        elif fields.get("sharedaccesssignature"):
            credential = AzureSasCredential(fields["sharedaccesssignature"])
            secrets.append(fields["sharedaccesssignature"])
        else:
            raise ConfigError("the Azure connection string has neither AccountKey nor "
                              "SharedAccessSignature")
    elif sas_url:
        parts = urlsplit(sas_url)
        if not parts.scheme or not parts.netloc or not parts.query:
            raise ConfigError("the SAS URL is malformed: expected "
                              "https://<account>.blob.core.windows.net/<container>?<sas token>")
        secrets.append(parts.query)
        path = [p for p in parts.path.split("/") if p]
        account_url = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        if path and _path_style(parts.hostname or ""):
            account_url += "/" + path.pop(0)
        if path:
            container = path[0]
            if len(path) > 1 and not prefix:
                prefix = "/".join(path[1:])
        credential = AzureSasCredential(parts.query)
    elif not account_url:
        raise ConfigError("AzureBlobStore needs a connection string, an account URL or a SAS URL")
    elif credential is None:
        credential = owned = _default_credential()
    elif isinstance(credential, str):
        if credential.lstrip("?").startswith(("sv=", "se=", "sp=", "st=", "sig=")):
            secrets.append(credential)
            credential = AzureSasCredential(credential.lstrip("?"))
        else:
            credential = AzureNamedKeyCredential(_account_from_url(account_url), credential)
    if isinstance(credential, AzureNamedKeyCredential):  # a key however it came
        secrets.append(credential.named_key.key)
    if not container:
        raise ConfigError("no Azure container given: pass one or set LUISY_AZURE_CONTAINER_NAME")
    assert account_url is not None  # every branch above set it or raised
    return AzureCredentials(account_url, container, prefix, credential, secrets, owned)


def _parse_connection_string(cs: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in cs.strip().strip(";").split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError("the Azure connection string is malformed: expected "
                              "'Key=Value;...' with AccountName and AccountKey (or a SAS)")
        fields[key.strip().lower()] = value.strip()
    return fields


def _endpoint_from_connection_string(fields: dict[str, str]) -> str:
    if fields.get("blobendpoint"):
        return fields["blobendpoint"].rstrip("/")
    account = fields.get("accountname")
    if not account:
        raise ConfigError("the Azure connection string has neither AccountName nor BlobEndpoint")
    protocol = fields.get("defaultendpointsprotocol", "https")
    suffix = fields.get("endpointsuffix", "core.windows.net")
    return f"{protocol}://{account}.blob.{suffix}"


def _check_key(key: str) -> None:
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("the Azure account key is not valid base64: copy it again from the "
                          "storage account's access keys") from None


def _path_style(host: str) -> bool:
    """Whether an endpoint on ``host`` names the account in its first path segment
    (Azurite, or any IP address) instead of in the host name."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _account_from_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.path.strip("/").split("/")[0] if _path_style(host) else host.split(".")[0]


def _default_credential() -> Any:
    try:
        from azure.identity.aio import DefaultAzureCredential
    except ImportError:
        raise ConfigError("no Azure key or SAS configured and azure-identity is not installed: "
                          "set LUISY_AZURE_STORAGE_KEY or `pip install azure-identity`") from None
    return DefaultAzureCredential()
