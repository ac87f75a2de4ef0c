"""Azure AD bearer tokens end to end: a push, a pull and a copy through the fast path against an
Azurite that serves https and checks OAuth tokens (``--oauth basic``: issuer, audience
and lifetime, not the signature), and the one-line error of an expired token.

The store runs in a child process whose ``SSL_CERT_FILE`` trusts the test's own CA
(aiohttp builds its verifying TLS context at import, so the parent cannot add one).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from benchmarks.azurite import Azurite, azurite_binary, start_azurite

pytestmark = pytest.mark.azurite

CHILD = textwrap.dedent('''
    import asyncio, base64, json, os, sys, time
    from azure.core.credentials import AccessToken
    import luisy_sync
    from luisy_sync.errors import AuthError
    from luisy_sync.stores.azure import AzureBlobStore

    def jwt(lifetime):
        def part(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        now = int(time.time())
        claims = {"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/tenant-x/",
                  "iat": now - 600, "nbf": now - 600, "exp": now + lifetime, "oid": "luisy-test"}
        return part({"alg": "RS256", "typ": "JWT"}) + "." + part(claims) + ".c2lnbmF0dXJl"

    class Tokens:
        def __init__(self, lifetime):
            self.lifetime, self.calls = lifetime, 0
        async def get_token(self, *scopes, **kw):
            assert scopes == ("https://storage.azure.com/.default",), scopes
            self.calls += 1
            return AccessToken(jwt(self.lifetime), int(time.time()) + 3600)
        async def close(self):
            pass

    async def main(endpoint, container, src, dest):
        tokens = Tokens(3600)
        async with AzureBlobStore(container, account_url=endpoint, credential=tokens) as store:
            assert store.fast_path, "a token credential on https takes the fast path"
            await store.ensure_container()
            pushed = await luisy_sync.push(src, store, cache=False, block_size=1 << 20)
            pulled = await luisy_sync.pull(store, dest, cache=False, block_size=1 << 20)
            copied = await store.copy("small.txt", "copies/small.txt")  # Copy Blob, same account
            assert (await store.get("copies/small.txt")).data.startswith(b"hello token"), copied
        expired = Tokens(-60)  # the service rejects it
        async with AzureBlobStore(container, account_url=endpoint, credential=expired) as store:
            try:
                await store.list()
            except AuthError as exc:
                message = str(exc)
            else:
                raise SystemExit("an expired token was accepted")
        token = jwt(-60)
        assert token not in message and token.split(".")[1] not in message, message
        print(json.dumps({"pushed": len(pushed.moved), "pulled": len(pulled.moved),
                          "token_fetches": tokens.calls, "expired_error": message}))

    asyncio.run(main(*sys.argv[1:]))
''')


def _self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key (PEM files); the certificate is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, str]]:
    """An Azurite serving https with OAuth checks, and the CA file that trusts it."""
    if azurite_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("azurite-blob is missing on CI: .ci/run must install azurite@3.35.0")
        pytest.skip("azurite-blob not installed (npm install -g azurite@3.35.0)")
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    server = start_azurite(tls=(cert, key), oauth=True)
    try:
        yield server, cert
    finally:
        server.stop()


def test_push_and_pull_with_an_azure_ad_token_on_the_fast_path(oauth_azurite: tuple[Azurite, str],
                                                               tmp_path: Path, container_name: str) -> None:
    server, ca = oauth_azurite
    assert server.endpoint.startswith("https://")
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "d").mkdir(parents=True)
    files = {"small.txt": b"hello token\n", "d/big.bin": os.urandom(3 * (1 << 20) + 17)}  # 4 blocks
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "SSL_CERT_FILE": ca}
    env.pop("LUISY_SYNC_AZURE_FASTPATH", None)
    proc = subprocess.run([sys.executable, str(script), server.endpoint, container_name, str(src), str(dest)],
                          env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["pushed"], result["pulled"]) == (2, 2)
    # one token for all requests of both syncs, one more for the SDK (it created the container)
    assert result["token_fetches"] == 2
    assert result["expired_error"].startswith("list az://") and "credentials rejected" in result["expired_error"]
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data
