"""The compat suite: the 1.4.7-style project ``shop147`` lives beside these tests."""

from __future__ import annotations

import os
import sys

import pytest

from luisy.codehash import clear_caches
from luisy.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from compat_env import AZURE_VARS  # noqa: E402  (importable once HERE is on sys.path)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    """No cloud or luisy variables from the outside; the embedded local remote in tmp_path."""
    for var in AZURE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LUISY_LOCAL_REMOTE", str(tmp_path / "remote"))
    monkeypatch.setenv("LUISY_SYNC_CACHE", "off")
    Config().reset()
    clear_caches()
    yield {"remote": str(tmp_path / "remote")}
    Config().reset()


@pytest.fixture
def wd(clean_env, tmp_path):
    """A working dir holding shop147's raw data, set in luisy's Config."""
    from shop147.tasks import make_raw_data

    path = tmp_path / "wd"
    make_raw_data(str(path))
    Config().set_param("working_dir", str(path))
    return path


@pytest.fixture(autouse=True)
def _config_reset_after_each_test():
    """create_testing_config leaves its settings in the process-wide Config (as in 1.4.7):
    reset it after each compat test so later suites see their own environment."""
    yield
    Config().reset()
