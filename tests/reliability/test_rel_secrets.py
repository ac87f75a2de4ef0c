"""Secrets never leak: account keys, SAS tokens and connection strings.

Succeeding and failing runs, through the API (logs captured at DEBUG including the
Azure SDK loggers, exceptions with their notes and formatted tracebacks, progress
events, report JSON) and through the CLI (stdout, stderr, ``--json``, ``-v``).
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest

from benchmarks.azurite import ACCOUNT, KEY, container_sas, free_port
from luisy_sync import AzureBlobStore, SyncError, pull, push
from rel_helpers import CountingProgress, make_files, run_cli, worker_env

pytestmark = [pytest.mark.azurite]

WRONG_KEY = base64.b64encode(b"a wrong key, but base64" * 3).decode()


def secrets_of(sas: str, connection_string: str) -> list[str]:
    sig = parse_qs(sas)["sig"][0]
    return [KEY, WRONG_KEY, sas, sig, quote(sig, safe=""), connection_string,
            KEY[:24], sig[:16]]  # partial leaks count too


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret leaked: ...{secret[:6]}..."


def exception_text(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *getattr(exc, "__notes__", []),
                      *traceback.format_exception(exc)])


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "azure.core.pipeline.policies.http_logging_policy", "luisy_sync", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.mark.timeout(60)
async def test_api_runs_leak_no_secret(azurite, azure_store, tmp_path: Path, logs) -> None:
    container = azure_store.container
    sas = container_sas(container)
    cs = azurite.connection_string
    secrets = secrets_of(sas, cs)
    src = tmp_path / "src"
    make_files(src, 8, seed=21, big={"big.bin": 700_000})
    seen: list[str] = []

    good = {
        "key": AzureBlobStore.from_account_key(ACCOUNT, KEY, container, endpoint=azurite.endpoint),
        "connection string": AzureBlobStore.from_connection_string(cs, container),
        "sas": AzureBlobStore.from_sas_url(f"{azurite.endpoint}/{container}?{sas}"),
        "sas through the sdk": AzureBlobStore.from_sas_url(f"{azurite.endpoint}/{container}?{sas}",
                                                           fast_path=False),
    }
    assert good["sas"].fast_path and not good["sas through the sdk"].fast_path
    for kind, store in good.items():
        progress = CountingProgress()
        async with store:
            pushed = await push(src, store, prefix=kind.replace(" ", "-"), block_size=256 * 1024,
                                progress=progress, cache=False)
            pulled = await pull(store, tmp_path / f"dest-{kind}", prefix=kind.replace(" ", "-"),
                                progress=progress, cache=False)
        assert pushed.ok and pulled.ok
        seen += [store.url, repr(store), json.dumps(pushed.to_dict(paths=True)),
                 json.dumps(pulled.to_dict(paths=True)), pushed.summary_line(), *progress.lines]

    bad_sig = sas.replace("sig=", "sig=AAAA")
    closed = f"http://127.0.0.1:{free_port()}/{ACCOUNT}"
    bad = {
        "wrong key": AzureBlobStore.from_account_key(ACCOUNT, WRONG_KEY, container, endpoint=azurite.endpoint),
        "tampered sas": AzureBlobStore.from_sas_url(f"{azurite.endpoint}/{container}?{bad_sig}"),
        "tampered sas, sdk": AzureBlobStore.from_sas_url(f"{azurite.endpoint}/{container}?{bad_sig}",
                                                         fast_path=False),
        "closed port": AzureBlobStore.from_connection_string(cs.replace(azurite.endpoint, closed), container),
        "sas, missing container": AzureBlobStore.from_sas_url(f"{azurite.endpoint}/missing{container[:20]}?{sas}"),
    }
    secrets.append(bad_sig)
    from luisy_sync import RetryPolicy

    fast = RetryPolicy(max_attempts=2, base=0.01, cap=0.02)
    for kind, store in bad.items():
        async with store:
            for run in (lambda: push(src, store, cache=False, policy=fast),
                        lambda: pull(store, tmp_path / "nowhere", cache=False, policy=fast)):
                with pytest.raises(SyncError) as caught:
                    await run()
                seen.append(exception_text(caught.value))
        seen += [store.url, repr(store)]
    assert any("credentials rejected" in s for s in seen) and any("cannot reach" in s for s in seen)
    assert "Request URL" in logs.text and "REDACTED" in logs.text  # the SDK logged its requests
    assert_clean("\n".join(seen) + "\n" + logs.text, secrets)


@pytest.mark.timeout(60)
def test_cli_runs_leak_no_secret(azurite, azure_store, tmp_path: Path) -> None:
    container = azure_store.container
    sas = container_sas(container)
    cs = azurite.connection_string
    secrets = secrets_of(sas, cs)
    src = tmp_path / "src"
    make_files(src, 5, seed=22)
    sas_url = f"{azurite.endpoint}/{container}?{sas}"
    bad_sas_url = sas_url.replace("sig=", "sig=AAAA")
    secrets.append(bad_sas_url.split("?", 1)[1])
    closed = f"http://127.0.0.1:{free_port()}/{ACCOUNT}"

    runs: list[tuple[list[str], dict[str, str], int]] = [
        (["push", str(src), f"az://{container}/cs", "--json", "-v"],
         {"AZURE_STORAGE_CONNECTION_STRING": cs}, 0),
        (["pull", f"az://{container}/cs", str(tmp_path / "d1"), "--json", "-v"],
         {"AZURE_STORAGE_CONNECTION_STRING": cs}, 0),
        (["push", str(src), "-", "--prefix", "sas", "-v"], {"LUISY_AZURE_SAS_URL": sas_url}, 0),
        (["pull", sas_url, str(tmp_path / "d2"), "--prefix", "sas", "--json", "-v"], {}, 0),
        (["push", str(src), f"az://{container}", "-v", "--json"],
         {"LUISY_AZURE_ACCOUNT_NAME": ACCOUNT, "LUISY_AZURE_STORAGE_KEY": WRONG_KEY,
          "LUISY_AZURE_ENDPOINT": azurite.endpoint}, 2),
        (["pull", bad_sas_url, str(tmp_path / "d3"), "-v"], {}, 2),
        (["push", str(src), f"az://{container}", "-v"],
         {"AZURE_STORAGE_CONNECTION_STRING": cs.replace(azurite.endpoint, closed)}, 2),
        (["push", str(src), f"az://{container}"],
         {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=x;AccountKey=" + WRONG_KEY + ";Oops"}, 2),
    ]
    for args, extra, code in runs:
        proc = run_cli(args, worker_env(tmp_path, extra))
        assert proc.returncode == code, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert_clean(proc.stdout + proc.stderr, secrets)
        if "--json" in args and code == 0:
            assert json.loads(proc.stdout)["failed"] == []
    assert (tmp_path / "d1").exists() and (tmp_path / "d2").exists()
