"""Parsed modules, cached per file: the AST and an index of top-level bindings.

Each module file is read and parsed once; the entry is reused while the file's
``(mtime_ns, size)`` stamp is unchanged.  The index also carries a memo that the
collector fills with per-definition results, so they die with a stale parse.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from dataclasses import dataclass, field

Stamp = tuple[int, int]

_BLOCKS = (ast.If, ast.Try, ast.TryStar, ast.With, ast.AsyncWith, ast.For, ast.AsyncFor, ast.While)


@dataclass(eq=False)
class ModuleIndex:
    """One parsed module: its tree, top-level bindings and star imports."""

    name: str
    path: str
    stamp: Stamp
    tree: ast.Module
    is_package: bool
    bindings: dict[str, list[ast.stmt]]
    star_imports: list[tuple[str, int]]
    memo: dict = field(default_factory=dict)

    @property
    def package(self) -> str:
        """The package relative imports in this module start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


_INDEXES: dict[str, ModuleIndex] = {}
_FILES: dict[str, str | None] = {}


def clear() -> None:
    """Forget every parsed module and module-file lookup."""
    _INDEXES.clear()
    _FILES.clear()


def _target_names(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def _statement_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return [name for target in stmt.targets for name in _target_names(target)]
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        return _target_names(stmt.target)
    if isinstance(stmt, ast.Import):
        return [a.asname or a.name.split(".", 1)[0] for a in stmt.names]
    if isinstance(stmt, ast.ImportFrom):
        return [a.asname or a.name for a in stmt.names if a.name != "*"]
    return []


def _index_bindings(tree: ast.Module) -> tuple[dict[str, list[ast.stmt]], list[tuple[str, int]]]:
    bindings: dict[str, list[ast.stmt]] = {}
    stars: list[tuple[str, int]] = []
    for stmt in _flatten_blocks(tree.body):
        if isinstance(stmt, ast.ImportFrom) and any(a.name == "*" for a in stmt.names):
            stars.append(("." * stmt.level + (stmt.module or ""), stmt.lineno))
        for name in _statement_names(stmt):
            bindings.setdefault(name, []).append(stmt)
    return bindings, stars


def module_file(name: str) -> str | None:
    """The ``.py`` file of module ``name`` without importing it, or None."""
    if name in _FILES:
        return _FILES[name]
    path = None
    module = sys.modules.get(name)
    if module is not None:
        path = getattr(module, "__file__", None)
    else:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            spec = None
        if spec is not None and spec.has_location:
            path = spec.origin
    if path is not None and not path.endswith(".py"):
        path = None
    _FILES[name] = path
    return path


def is_module(name: str) -> bool:
    """Whether ``name`` is an importable module (source or not)."""
    if name in sys.modules or _FILES.get(name):
        return True
    if module_file(name) is not None:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def module_index(name: str) -> ModuleIndex | None:
    """The cached index of module ``name``; None when it has no Python source."""
    path = module_file(name)
    if path is None:
        return None
    stamp = current_stamp(path)
    if stamp is None:
        return None
    cached = _INDEXES.get(path)
    if cached is not None and cached.stamp == stamp and cached.name == name:
        return cached
    with open(path, "rb") as handle:
        source = handle.read()
    tree = ast.parse(source, filename=os.path.basename(path))
    bindings, stars = _index_bindings(tree)
    index = ModuleIndex(
        name=name,
        path=path,
        stamp=stamp,
        tree=tree,
        is_package=os.path.basename(path) == "__init__.py",
        bindings=bindings,
        star_imports=stars,
    )
    _INDEXES[path] = index
    return index


def current_stamp(path: str) -> Stamp | None:
    """The file's ``(mtime_ns, size)`` now, or None when it is gone."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size)


def find_class(index: ModuleIndex, qualname: str) -> ast.ClassDef | None:
    """The class definition for ``qualname`` (handles nesting and ``<locals>``)."""
    scopes: list[list[ast.stmt]] = [index.tree.body]
    found: ast.AST | None = None
    for part in qualname.split("."):
        if part == "<locals>":
            if found is None:
                return None
            scopes = [[n for n in ast.walk(found) if n is not found and isinstance(n, ast.stmt)]]
            continue
        found = None
        for body in scopes:
            for stmt in _flatten_blocks(body):
                if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == part:
                    found = stmt  # the last definition wins, as at runtime
        if found is None:
            return None
        scopes = [found.body]
    return found if isinstance(found, ast.ClassDef) else None


def _flatten_blocks(body: list[ast.stmt]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    pending = list(reversed(body))
    while pending:
        stmt = pending.pop()
        if isinstance(stmt, _BLOCKS):
            nested: list[ast.stmt] = []
            for block in ("body", "orelse", "finalbody"):
                nested.extend(getattr(stmt, block, []) or [])
            for handler in getattr(stmt, "handlers", []) or []:
                nested.extend(handler.body)
            pending.extend(reversed(nested))
        else:
            out.append(stmt)
    return out
