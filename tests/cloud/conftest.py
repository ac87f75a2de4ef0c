"""Fixtures for cloud-sync tests: a throw-away pipeline package, run logs, remotes
(a local directory and Azurite) and working dirs standing for separate machines."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from luisy.codehash import clear_caches
from luisy.config import Config

AZURE_VARS = ("AZURE_STORAGE_CONNECTION_STRING", "LUISY_AZURE_ACCOUNT_NAME", "LUISY_AZURE_STORAGE_KEY",
              "LUISY_AZURE_ENDPOINT", "LUISY_AZURE_CONTAINER_NAME", "LUISY_AZURE_SAS_URL",
              "AZURE_STORAGE_SAS_URL", "LUISY_REMOTE", "LUISY_LOCAL_REMOTE")

PIPELINE = '''
    import os

    import pandas as pd

    import luisy


    def log_run(name):
        with open(os.environ["LUISY_TEST_RUNLOG"], "a") as fh:
            fh.write(name + "\\n")


    @luisy.project_name("cloudproj")
    @luisy.raw
    class Raw(luisy.Task):
        n = luisy.IntParameter(default=5)

        def run(self):
            log_run("Raw")
            self.write(list(range(self.n)))


    @luisy.project_name("cloudproj")
    @luisy.interim
    @luisy.requires(Raw)
    class Double(luisy.Task):
        def run(self):
            log_run("Double")
            self.write([2 * x for x in self.input().read()])


    @luisy.project_name("cloudproj")
    @luisy.interim
    @luisy.requires(Raw)
    @luisy.parquetdir_output
    class Table(luisy.Task):
        def get_folder_name(self):
            return f"Table_n={self.n}"

        def run(self):
            log_run("Table")
            self.write(pd.DataFrame({"x": self.input().read()}))


    @luisy.project_name("cloudproj")
    @luisy.final
    @luisy.requires(Double, Table, as_dict=True)
    class Final(luisy.Task):
        def run(self):
            log_run("Final")
            doubled = self.input()["Double"].read()
            table = self.input()["Table"].read()
            self.write({"sum": sum(doubled), "rows": int(len(table))})
'''


class Pipeline:
    """The test pipeline as a package in tmp_path; ``edit`` + ``load`` change its code."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.name = f"cloudpipe_{uuid.uuid4().hex[:8]}"
        self.dir = src / self.name
        self.dir.mkdir(parents=True)
        (self.dir / "__init__.py").write_text("")
        self._tick = 0
        self.write(textwrap.dedent(PIPELINE).lstrip("\n"))

    @property
    def module(self) -> str:
        return f"{self.name}.tasks"

    def write(self, text: str) -> None:
        self._tick += 10
        path = self.dir / "tasks.py"
        path.write_text(text)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + self._tick * 10**9))

    def edit(self, old: str, new: str) -> None:
        text = (self.dir / "tasks.py").read_text()
        assert old in text
        self.write(text.replace(old, new))

    def load(self) -> ModuleType:
        for mod in [m for m in sys.modules if m == self.name or m.startswith(self.name + ".")]:
            del sys.modules[mod]
        clear_caches()
        importlib.invalidate_caches()
        return importlib.import_module(self.module)


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    src = tmp_path / "src"
    src.mkdir()
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    pipe = Pipeline(src)
    yield pipe
    for mod in [m for m in sys.modules if m == pipe.name or m.startswith(pipe.name + ".")]:
        del sys.modules[mod]


@pytest.fixture
def run_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Names of the tasks that ran since the last call (tasks append to $LUISY_TEST_RUNLOG)."""
    path = tmp_path / "runs.log"
    monkeypatch.setenv("LUISY_TEST_RUNLOG", str(path))

    def runs() -> list[str]:
        if not path.exists():
            return []
        names = sorted(path.read_text().split())
        path.unlink()
        return names

    return runs


@pytest.fixture
def no_cloud_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No remote configured at all (the default local remote lands in tmp_path)."""
    for var in AZURE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LUISY_SYNC_CACHE", "off")


@pytest.fixture
def local_remote(no_cloud_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LUISY_REMOTE pointing at a directory in tmp_path."""
    root = tmp_path / "remote"
    monkeypatch.setenv("LUISY_REMOTE", root.as_uri())
    return root


@pytest.fixture(params=["local", "azurite"])
def remote(request: pytest.FixtureRequest, no_cloud_env: None, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs against a local directory remote and against Azurite."""
    if request.param == "local":
        monkeypatch.setenv("LUISY_REMOTE", (tmp_path / "remote").as_uri())
    else:
        request.getfixturevalue("azurite_env")
    return request.param


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``use(name)``: make ``tmp_path/name`` luisy's working dir (a separate machine)."""

    def use(name: str) -> Path:
        wd = tmp_path / name
        wd.mkdir(exist_ok=True)
        Config().reset()
        Config().set_param("working_dir", str(wd))
        return wd

    yield use
    Config().reset()
