"""Versions of the external packages a task uses.

A top-level module name (``yaml``, ``pandas``) is mapped to the distributions
that provide it.  Their versions come from the requirements file named by
``LUISY_REQUIREMENTS_PATH`` when it is set (pinned ``name==version`` lines; a
package not listed there takes the version of a listed package that requires
it), else from the installed distribution metadata.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import sys
from collections import deque
from collections.abc import Mapping

from luisy.config import Config

from .errors import CodeHashError

REQUIREMENTS_ENV = "LUISY_REQUIREMENTS_PATH"
UNKNOWN = "unknown"

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*([^\s;#,]+)")

_top_level_map: Mapping[str, list[str]] | None = None
_dists_of: dict[str, tuple[str, ...]] = {}
_installed: dict[str, str | None] = {}
_requires: dict[str, tuple[str, ...]] = {}
_pins_cache: dict[str, tuple[tuple[int, int], dict[str, str], dict[str, str]]] = {}


def clear() -> None:
    """Forget every cached distribution lookup and parsed requirements file."""
    global _top_level_map
    _top_level_map = None
    _dists_of.clear()
    _installed.clear()
    _requires.clear()
    _pins_cache.clear()


def normalize_name(name: str) -> str:
    """PEP 503 form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions_of(top: str) -> tuple[str, ...]:
    """Normalised names of the distributions providing top-level module ``top``."""
    if top in _dists_of:
        return _dists_of[top]
    names: list[str] = []
    try:
        names = [metadata.distribution(top).metadata["Name"] or top]
    except metadata.PackageNotFoundError:
        global _top_level_map
        if _top_level_map is None:  # slow (scans every installed dist): only when needed
            _top_level_map = metadata.packages_distributions()
        names = list(_top_level_map.get(top, []))
    result = tuple(sorted({normalize_name(n) for n in names}))
    _dists_of[top] = result
    return result


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None."""
    if dist not in _installed:
        try:
            _installed[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            _installed[dist] = None
    return _installed[dist]


def _direct_requirements(dist: str) -> tuple[str, ...]:
    if dist not in _requires:
        try:
            lines = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            lines = []
        names = set()
        for line in lines:
            marker = line.partition(";")[2]
            if "extra" in marker:
                continue  # optional extras are not installed by default
            match = _NAME.match(line)
            if match:
                names.add(normalize_name(match.group(1)))
        _requires[dist] = tuple(sorted(names))
    return _requires[dist]


def _read_pins(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(pins, required_by)`` for a requirements file, cached by its stamp."""
    try:
        status = os.stat(path)
    except OSError:
        raise CodeHashError(
            f"{REQUIREMENTS_ENV} points to {path!r}, which does not exist; "
            "set it to your requirements file or unset it"
        ) from None
    stamp = (status.st_mtime_ns, status.st_size)
    cached = _pins_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1], cached[2]
    pins: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            match = _PIN.match(line) if line and not line.startswith("-") else None
            if match:
                pins[normalize_name(match.group(1))] = match.group(2)
    # required_by: an unlisted distribution -> the listed one that pulls it in,
    # nearest first (breadth-first), ties broken by name for determinism.
    required_by: dict[str, str] = {}
    queue = deque((name, name) for name in sorted(pins))
    seen = set(pins)
    while queue:
        dist, root = queue.popleft()
        for child in _direct_requirements(dist):
            if child not in seen:
                seen.add(child)
                required_by[child] = root
                queue.append((child, root))
    _pins_cache[path] = (stamp, pins, required_by)
    return pins, required_by


def _fallback_version(top: str) -> str:
    module = sys.modules.get(top)
    version = getattr(module, "__version__", None)
    return str(version) if isinstance(version, str) else UNKNOWN


def version_entries(tops: set[str] | frozenset[str]) -> list[str]:
    """Sorted ``dist==version`` lines for the top-level modules ``tops``."""
    path = Config().get_param("requirements_path") or None  # --requirements-path, else the env
    pins, required_by = _read_pins(path) if path else ({}, {})
    entries: set[str] = set()
    for top in tops:
        dists = distributions_of(top)
        if not dists:
            entries.add(f"{top}=={_fallback_version(top)}")
            continue
        for dist in dists:
            if dist in pins:
                entries.add(f"{dist}=={pins[dist]}")
            elif dist in required_by:
                parent = required_by[dist]
                entries.add(f"{dist}<{parent}=={pins[parent]}")
            else:
                entries.add(f"{dist}=={installed_version(dist) or _fallback_version(top)}")
    return sorted(entries)
