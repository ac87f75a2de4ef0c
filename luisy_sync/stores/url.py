"""Pick a store from a URL (``open_store``) or from the environment (``store_from_env``).

URLs: ``file:///abs/dir`` (LocalStore), ``az://container/prefix`` (AzureBlobStore with
the account from the environment), ``https://<account>.blob.core.windows.net/<container>?<sas>``.

Environment, in order: ``LUISY_REMOTE`` (a URL); Azure settings
(``AZURE_STORAGE_CONNECTION_STRING``; ``LUISY_AZURE_ACCOUNT_NAME`` + ``LUISY_AZURE_STORAGE_KEY``
[+ ``LUISY_AZURE_ENDPOINT``]; ``LUISY_AZURE_SAS_URL`` / ``AZURE_STORAGE_SAS_URL``;
``LUISY_AZURE_ACCOUNT_NAME`` alone with azure-identity); otherwise a local directory
(``LUISY_LOCAL_REMOTE``, ``default_local`` or ``~/.local/share/luisy/remote/<container>``).
Error messages name the variable to fix, never its value.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

from luisy_sync.errors import ConfigError, UnsafePathError
from luisy_sync.paths import safe_relpath
from luisy_sync.stores.base import Store

DEFAULT_CONTAINER = "projects"
_CONTAINER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


@dataclass(frozen=True)
class _Choice:
    """A store to build and a secret-free line saying where it comes from."""

    build: Callable[[], Store]
    description: str


def _check_container(container: str, source: str) -> str:
    if not _CONTAINER_RE.match(container):
        raise ConfigError(f"invalid Azure container name {container!r} (from {source}): use 3-63 "
                          "lowercase letters, digits and single hyphens")
    return container


def _join_prefix(*parts: str) -> str:
    prefix = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
    if prefix:
        try:
            safe_relpath(prefix)
        except UnsafePathError as exc:
            raise ConfigError(f"invalid store prefix: {exc}") from None
    return prefix


def identity_installed() -> bool:
    """Whether azure-identity (DefaultAzureCredential) is importable."""
    return importlib.util.find_spec("azure.identity") is not None


def _azure_from_env(env: Mapping[str, str], container: str, prefix: str,
                    opts: dict[str, Any]) -> _Choice | None:
    """The Azure store the environment configures, None if it configures none."""
    from luisy_sync.stores.azure import DEFAULT_ENDPOINT, AzureBlobStore

    cs = env.get("AZURE_STORAGE_CONNECTION_STRING", "").strip()
    account = env.get("LUISY_AZURE_ACCOUNT_NAME", "").strip()
    key = env.get("LUISY_AZURE_STORAGE_KEY", "").strip()
    endpoint = env.get("LUISY_AZURE_ENDPOINT", "").strip().rstrip("/")
    sas_var = next((v for v in ("LUISY_AZURE_SAS_URL", "AZURE_STORAGE_SAS_URL") if env.get(v, "").strip()), None)
    where = f"container {container!r}" + (f", prefix {prefix!r}" if prefix else "")
    if cs:
        try:
            store = AzureBlobStore.from_connection_string(cs, container, prefix, **opts)
        except (ConfigError, ValueError):
            raise ConfigError("AZURE_STORAGE_CONNECTION_STRING is malformed: expected "
                              "'AccountName=...;AccountKey=...' (plus BlobEndpoint for Azurite)") from None
        return _Choice(lambda: store, f"Azure {store.account_url}, {where} "
                                      "(from AZURE_STORAGE_CONNECTION_STRING)")
    if key and not account:
        raise ConfigError("LUISY_AZURE_STORAGE_KEY is set but LUISY_AZURE_ACCOUNT_NAME is not: "
                          "set LUISY_AZURE_ACCOUNT_NAME to the storage account name")
    if endpoint and not account:
        raise ConfigError("LUISY_AZURE_ENDPOINT is set but LUISY_AZURE_ACCOUNT_NAME is not: "
                          "set LUISY_AZURE_ACCOUNT_NAME to the storage account name")
    url = endpoint or DEFAULT_ENDPOINT.format(account=account)
    if account and key:
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError("LUISY_AZURE_STORAGE_KEY is not a valid account key (base64 expected): "
                              "copy it again from the storage account's access keys") from None
        return _Choice(lambda: AzureBlobStore.from_account_key(account, key, container, prefix,
                                                               endpoint=url, **opts),
                       f"Azure {url}, {where} (from LUISY_AZURE_ACCOUNT_NAME and LUISY_AZURE_STORAGE_KEY)")
    if sas_var:
        sas = env[sas_var].strip()
        parts = urlsplit(sas)
        if not parts.scheme or not parts.netloc or not parts.query:
            raise ConfigError(f"{sas_var} is malformed: expected "
                              "https://<account>.blob.core.windows.net/<container>?<sas token>")
        store = AzureBlobStore.from_sas_url(sas, prefix, container=container, **opts)
        return _Choice(lambda: store, f"Azure {store.account_url}, container {store.container!r}"
                                      + (f", prefix {store.prefix!r}" if store.prefix else "")
                                      + f" (from {sas_var})")
    if account:
        if not identity_installed():
            raise ConfigError("LUISY_AZURE_ACCOUNT_NAME is set but LUISY_AZURE_STORAGE_KEY is not, and "
                              "azure-identity is not installed: set LUISY_AZURE_STORAGE_KEY or "
                              "`pip install azure-identity`")
        if urlsplit(url).scheme != "https":
            raise ConfigError(f"LUISY_AZURE_ACCOUNT_NAME is set but LUISY_AZURE_STORAGE_KEY is not, and "
                              f"DefaultAzureCredential needs an https endpoint (LUISY_AZURE_ENDPOINT is "
                              f"{url}): set LUISY_AZURE_STORAGE_KEY")
        return _Choice(lambda: AzureBlobStore(container, prefix, account_url=url, **opts),
                       f"Azure {url}, {where} (from LUISY_AZURE_ACCOUNT_NAME with DefaultAzureCredential)")
    return None


def _local_path_from(value: str, source: str) -> str:
    if value.startswith("file:"):
        return _file_url_path(value, source)
    path = os.path.expanduser(value)
    if not os.path.isabs(path):
        path = os.path.abspath(path)
    return path


def _file_url_path(url: str, source: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise ConfigError(f"{_url_in(source)} is not a valid file URL: expected file:///absolute/path")
    return unquote(parts.path)


def _local_choice(path: str, prefix: str, source: str, opts: dict[str, Any]) -> _Choice:
    from luisy_sync.stores.local import LocalStore

    root = os.path.join(path, *prefix.split("/")) if prefix else path
    return _Choice(lambda: LocalStore(root, **opts), f"local directory {root} ({source})")


def _choose_url(url: str, prefix: str, opts: dict[str, Any], env: Mapping[str, str],
                source: str) -> _Choice:
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _local_choice(_file_url_path(url, source), _join_prefix(prefix), source, opts)
    if scheme == "az":
        container = _check_container(parts.netloc, source)
        full = _join_prefix(unquote(parts.path), prefix)
        choice = _azure_from_env(env, container, full, opts)
        if choice is None:
            raise ConfigError(f"{source} names an Azure container but no Azure account is configured: "
                              "set AZURE_STORAGE_CONNECTION_STRING or LUISY_AZURE_ACCOUNT_NAME "
                              "and LUISY_AZURE_STORAGE_KEY")
        return choice
    if scheme in ("https", "http") and parts.query:
        from luisy_sync.stores.azure import AzureBlobStore

        store = AzureBlobStore.from_sas_url(url, _join_prefix(prefix), **opts)
        return _Choice(lambda: store, f"Azure {store.account_url}, container {store.container!r} "
                                      f"(SAS URL from {source})")
    raise ConfigError(f"unsupported {_url_in(source)}: use file:///absolute/dir, "
                      "az://container/prefix or an Azure container SAS URL")


def _url_in(source: str) -> str:
    """``store URL '...'`` as is, or ``store URL in LUISY_REMOTE`` for a variable."""
    return source if source.startswith("store URL") else f"store URL in {source}"


def _describe_url(url: str) -> str:
    return url.split("?", 1)[0]


def open_store(url: str, *, env: Mapping[str, str] | None = None, **opts: Any) -> Store:
    """A store for ``url``: ``file:///abs/dir``, ``az://container/prefix`` or a SAS URL
    (an ``az://`` URL takes the account from ``env``, default ``os.environ``)."""
    return _choose_url(url, "", opts, os.environ if env is None else env,
                       f"store URL {_describe_url(url)!r}").build()


def _choose_env(container: str | None, prefix: str, default_local: str | os.PathLike[str] | None,
                env: Mapping[str, str], opts: dict[str, Any]) -> _Choice:
    prefix = _join_prefix(prefix)
    remote = env.get("LUISY_REMOTE", "").strip()
    if remote:
        return _choose_url(remote, prefix, opts, env, "LUISY_REMOTE")
    source = "the container argument" if container else "LUISY_AZURE_CONTAINER_NAME"
    name = container or env.get("LUISY_AZURE_CONTAINER_NAME", "").strip() or DEFAULT_CONTAINER
    azure_configured = any(env.get(v, "").strip() for v in (
        "AZURE_STORAGE_CONNECTION_STRING", "LUISY_AZURE_ACCOUNT_NAME", "LUISY_AZURE_STORAGE_KEY",
        "LUISY_AZURE_ENDPOINT", "LUISY_AZURE_SAS_URL", "AZURE_STORAGE_SAS_URL"))
    if azure_configured:
        choice = _azure_from_env(env, _check_container(name, source), prefix, opts)
        if choice is not None:
            return choice
    local = env.get("LUISY_LOCAL_REMOTE", "").strip()
    if local:
        return _local_choice(_local_path_from(local, "LUISY_LOCAL_REMOTE"), prefix,
                             "from LUISY_LOCAL_REMOTE", opts)
    if default_local is not None:
        return _local_choice(os.path.abspath(os.fspath(default_local)), prefix, "default", opts)
    try:
        safe_relpath(name)
    except UnsafePathError as exc:
        raise ConfigError(f"invalid container name for the local remote: {exc}") from None
    data_home = env.get("XDG_DATA_HOME", "").strip() or os.path.join(Path.home(), ".local", "share")
    choice = _local_choice(os.path.join(data_home, "luisy", "remote", name), prefix,
                           "default: no Azure settings found", opts)

    def build() -> Store:
        _private_dirs(data_home, "luisy", "remote")
        return choice.build()

    return _Choice(build, choice.description)


def _private_dirs(base: str, *names: str) -> None:
    """Create the missing directories ``base/names[0]/...`` as 0700 (the default local
    remote holds your pipeline's data: it is not for other users to read). A directory
    that cannot be made is left to the store to report when it is used."""
    path = base
    for name in names:
        path = os.path.join(path, name)
        if os.path.isdir(path):
            continue
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except OSError:
            return


def store_from_env(container: str | None = None, prefix: str = "", *,
                   default_local: str | os.PathLike[str] | None = None,
                   env: Mapping[str, str] | None = None, **opts: Any) -> Store:
    """The store the environment (``env``, default ``os.environ``) configures (see the
    module docstring for the order)."""
    return _choose_env(container, prefix, default_local, os.environ if env is None else env,
                       opts).build()


def describe_store_source(container: str | None = None, prefix: str = "", *,
                          default_local: str | os.PathLike[str] | None = None,
                          env: Mapping[str, str] | None = None) -> str:
    """One secret-free line saying which store ``store_from_env`` picks and why."""
    return _choose_env(container, prefix, default_local, os.environ if env is None else env,
                       {}).description
