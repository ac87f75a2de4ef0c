"""Shared fixtures: a private Azurite for the whole session and fresh containers."""

from __future__ import annotations

import os
import uuid

import pytest

from benchmarks.azurite import Azurite, azurite_binary, start_azurite


@pytest.fixture(scope="session")
def azurite() -> Azurite:
    """A running Azurite on a free loopback port (started here, stopped at the end)."""
    if azurite_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("azurite-blob is missing on CI: .ci/run must install azurite@3.35.0")
        pytest.skip("azurite-blob not installed (npm install -g azurite@3.35.0)")
    server = start_azurite()
    yield server
    server.stop()


@pytest.fixture
def container_name() -> str:
    """A fresh, valid container name for one test."""
    return "t" + uuid.uuid4().hex[:20]


@pytest.fixture
def azurite_env(azurite: Azurite, container_name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing at Azurite with a fresh container name, set for this test."""
    env = azurite.env(container_name)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
