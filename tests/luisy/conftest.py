"""Fixtures for the luisy pipeline-layer tests: a fresh working dir and throw-away
pipeline packages written into tmp_path (re-importable after edits)."""

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


@pytest.fixture
def working_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty working dir set in luisy's Config (reset afterwards)."""
    wd = tmp_path / "wd"
    wd.mkdir()
    Config().reset()
    Config().set_param("working_dir", str(wd))
    yield wd
    Config().reset()


@pytest.fixture
def run_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Tasks of the test pipelines append their name to $LUISY_TEST_RUNLOG when they run.

    Calling the fixture value returns the names logged since the previous call.
    """
    path = tmp_path / "runs.log"
    monkeypatch.setenv("LUISY_TEST_RUNLOG", str(path))

    def runs() -> list[str]:
        if not path.exists():
            return []
        names = path.read_text().split()
        path.unlink()
        return sorted(names)

    return runs


class PipelinePackage:
    """A package in tmp_path whose files can be rewritten and re-imported."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self._tick = 0

    def write(self, files: dict[str, str]) -> None:
        """Write (dedented) files; each write gets a later mtime so edits are seen."""
        self._tick += 10
        for rel, source in files.items():
            path = self.dir / rel
            path.write_text(textwrap.dedent(source).lstrip("\n"))
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + self._tick * 10**9))

    def edit(self, rel: str, old: str, new: str) -> None:
        """Replace ``old`` by ``new`` in one file (which must contain it)."""
        text = (self.dir / rel).read_text()
        assert old in text, f"{old!r} not in {rel}"
        self.write({rel: text.replace(old, new)})

    def load(self, module: str = "tasks") -> ModuleType:
        """Import ``<package>.<module>`` afresh (new task classes)."""
        for mod in [m for m in sys.modules if m == self.name or m.startswith(self.name + ".")]:
            del sys.modules[mod]
        clear_caches()
        importlib.invalidate_caches()
        return importlib.import_module(f"{self.name}.{module}")


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., PipelinePackage]:
    """Factory: ``make_package(files)`` writes a uniquely named package and returns it."""
    src = tmp_path / "src"
    src.mkdir()
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    created: list[str] = []

    def make(files: dict[str, str], name: str | None = None) -> PipelinePackage:
        pkg = PipelinePackage(src, name or f"pipe_{uuid.uuid4().hex[:10]}")
        pkg.write({"__init__.py": "", **files})
        created.append(pkg.name)
        return pkg

    yield make
    for name in created:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]
