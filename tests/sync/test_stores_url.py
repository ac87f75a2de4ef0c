"""open_store / store_from_env / describe_store_source: which store the URL or environment picks."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.azurite import ACCOUNT, KEY
from luisy_sync.errors import ConfigError
from luisy_sync.stores import url as store_url
from luisy_sync.stores.azure import AzureBlobStore
from luisy_sync.stores.local import LocalStore
from luisy_sync.stores.url import describe_store_source, open_store, store_from_env

ENV_VARS = ["LUISY_REMOTE", "AZURE_STORAGE_CONNECTION_STRING", "LUISY_AZURE_ACCOUNT_NAME",
            "LUISY_AZURE_STORAGE_KEY", "LUISY_AZURE_ENDPOINT", "LUISY_AZURE_SAS_URL",
            "AZURE_STORAGE_SAS_URL", "LUISY_AZURE_CONTAINER_NAME", "LUISY_LOCAL_REMOTE"]
CS = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net"
SAS = "https://acct.blob.core.windows.net/data?sv=2023-01-03&sp=rwl&sig=SECRETSIG%3D"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path


async def _azure(store: object) -> AzureBlobStore:
    assert isinstance(store, AzureBlobStore)
    await store.close()
    return store


def test_nothing_configured_gives_the_default_local_remote(tmp_path: Path) -> None:
    store = store_from_env()
    assert isinstance(store, LocalStore)
    assert store.root == str(tmp_path / "xdg" / "luisy" / "remote" / "projects")
    assert "no Azure settings" in describe_store_source()
    assert store_from_env("other", "p/q").root == str(tmp_path / "xdg" / "luisy" / "remote" / "other" / "p" / "q")


def test_default_local_and_luisy_local_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store_from_env(default_local=tmp_path / "d").root == str(tmp_path / "d")
    monkeypatch.setenv("LUISY_LOCAL_REMOTE", str(tmp_path / "env"))
    assert store_from_env(default_local=tmp_path / "d").root == str(tmp_path / "env")
    assert "LUISY_LOCAL_REMOTE" in describe_store_source()
    monkeypatch.setenv("LUISY_LOCAL_REMOTE", (tmp_path / "url").as_uri())
    assert store_from_env().root == str(tmp_path / "url")


def test_luisy_remote_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", CS)
    monkeypatch.setenv("LUISY_REMOTE", (tmp_path / "r").as_uri())
    store = store_from_env("ignored", "sub/dir")
    assert isinstance(store, LocalStore) and store.root == str(tmp_path / "r" / "sub" / "dir")
    assert describe_store_source().endswith("(LUISY_REMOTE)")


async def test_luisy_remote_az_url_uses_env_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUISY_AZURE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("LUISY_AZURE_STORAGE_KEY", KEY)
    monkeypatch.setenv("LUISY_REMOTE", "az://bucket/base")
    store = await _azure(store_from_env(prefix="run1"))
    assert (store.container, store.prefix, store.url) == ("bucket", "base/run1", "az://bucket/base/run1")
    assert store.account_url == "https://acct.blob.core.windows.net"


@pytest.mark.parametrize("container_arg,env_container,expected", [
    (None, None, "projects"), (None, "fromenv", "fromenv"), ("fromarg", "fromenv", "fromarg")])
async def test_connection_string_and_container_choice(monkeypatch: pytest.MonkeyPatch, container_arg: str | None,
                                                      env_container: str | None, expected: str) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", CS)
    if env_container:
        monkeypatch.setenv("LUISY_AZURE_CONTAINER_NAME", env_container)
    store = await _azure(store_from_env(container_arg))
    assert store.container == expected and store.account_url == "https://acct.blob.core.windows.net"
    line = describe_store_source(container_arg)
    assert "AZURE_STORAGE_CONNECTION_STRING" in line and KEY not in line and "\n" not in line


async def test_account_key_with_endpoint_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUISY_AZURE_ACCOUNT_NAME", ACCOUNT)
    monkeypatch.setenv("LUISY_AZURE_STORAGE_KEY", KEY)
    monkeypatch.setenv("LUISY_AZURE_ENDPOINT", f"http://127.0.0.1:1/{ACCOUNT}/")
    store = await _azure(store_from_env("cc1"))
    assert store.account_url == f"http://127.0.0.1:1/{ACCOUNT}"
    assert KEY not in describe_store_source("cc1")


@pytest.mark.parametrize("var", ["LUISY_AZURE_SAS_URL", "AZURE_STORAGE_SAS_URL"])
async def test_sas_url_from_env(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, SAS)
    store = await _azure(store_from_env(prefix="p"))
    assert (store.container, store.prefix) == ("data", "p")
    line = describe_store_source()
    assert var in line and "SECRETSIG" not in line and "sig=" not in line


async def test_account_alone_uses_default_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("azure.identity", reason="the 'identity' extra is not installed")
    monkeypatch.setenv("LUISY_AZURE_ACCOUNT_NAME", "acct")
    store = await _azure(store_from_env())
    assert "DefaultAzureCredential" in describe_store_source()
    assert store.account_url == "https://acct.blob.core.windows.net"


@pytest.mark.parametrize("env,names", [
    ({"LUISY_AZURE_ACCOUNT_NAME": "acct"}, "LUISY_AZURE_STORAGE_KEY"),  # with identity missing
    ({"LUISY_AZURE_STORAGE_KEY": KEY}, "LUISY_AZURE_ACCOUNT_NAME"),
    ({"LUISY_AZURE_ENDPOINT": "http://127.0.0.1:1/x"}, "LUISY_AZURE_ACCOUNT_NAME"),
    ({"AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct;AccountKey"}, "AZURE_STORAGE_CONNECTION_STRING"),
    ({"AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct;AccountKey=SECRET*NOTB64"},
     "AZURE_STORAGE_CONNECTION_STRING"),
    ({"LUISY_AZURE_ACCOUNT_NAME": "acct", "LUISY_AZURE_STORAGE_KEY": "SECRET*NOTB64"}, "LUISY_AZURE_STORAGE_KEY"),
    ({"LUISY_AZURE_SAS_URL": "https://acct.blob.core.windows.net/data"}, "LUISY_AZURE_SAS_URL"),
    ({"AZURE_STORAGE_CONNECTION_STRING": CS, "LUISY_AZURE_CONTAINER_NAME": "Bad_Name"},
     "LUISY_AZURE_CONTAINER_NAME"),
])
def test_half_configured_azure_is_a_config_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                 names: str) -> None:
    monkeypatch.setattr(store_url, "identity_installed", lambda: False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as err:
        store_from_env()
    text = str(err.value)
    assert names in text and "\n" not in text
    assert KEY not in text and "SECRET" not in text


def test_account_without_key_over_http_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # azure-identity installed or not: Azure AD tokens are refused over http (say, Azurite), so
    # the missing key is named before any request instead of a late SDK ValueError
    monkeypatch.setattr(store_url, "identity_installed", lambda: True)
    monkeypatch.setenv("LUISY_AZURE_ACCOUNT_NAME", "devstoreaccount1")
    monkeypatch.setenv("LUISY_AZURE_ENDPOINT", "http://127.0.0.1:10000/devstoreaccount1")
    with pytest.raises(ConfigError) as err:
        store_from_env()
    text = str(err.value)
    assert "LUISY_AZURE_STORAGE_KEY" in text and "https" in text and "\n" not in text


@pytest.mark.parametrize("bad", ["", "s3://bucket/x", "file://host/x", "file:relative", "az://",
                                 "az://UPPER/x", "az://ok-name/../x", "/abs/path/without/scheme"])
def test_bad_urls(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_store(bad)
    assert "\n" not in str(err.value)


def test_az_url_without_account(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        open_store("az://container/prefix")


async def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store((tmp_path / "dir with space").as_uri(), create=False)
    assert isinstance(store, LocalStore) and store.root == str(tmp_path / "dir with space")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", CS)
    az = await _azure(open_store("az://container/a/b"))
    assert (az.container, az.prefix, az.url) == ("container", "a/b", "az://container/a/b")
    sas = await _azure(open_store(SAS))
    assert sas.container == "data" and "sig" not in sas.url


@pytest.mark.azurite
async def test_store_from_azurite_env_works(azurite_env: dict[str, str]) -> None:
    async with store_from_env(prefix="e2e") as store:
        assert isinstance(store, AzureBlobStore)
        assert store.container == azurite_env["LUISY_AZURE_CONTAINER_NAME"]
        await store.ensure_container()
        await store.put("x", b"1")
        assert [o.name for o in await store.list()] == ["x"]
