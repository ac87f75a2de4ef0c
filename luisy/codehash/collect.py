"""Collect the code a class depends on: same-package definitions, transitively.

The walk works on *references*, small tuples that name something to look at:

- ``("cls", module, qualname)``: the class being hashed;
- ``("bind", module, name, path)``: whatever ``name`` is bound to at the top
  level of ``module``; ``path`` is the attribute path read on it (``h.f`` ->
  ``("f",)``), which matters when the binding turns out to be a module;
- ``("module", module, path)``: a module; an empty path means the whole module
  is used, otherwise the path picks a submodule or a name inside it;
- ``("ext", top)``: an external package, hashed by its version.

Analysing a reference looks at one module only and is memoised on that
module's cached index, so a changed file invalidates exactly its own results.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import xxhash

from .errors import CodeHashError, StarImportError
from .modules import ModuleIndex, Stamp, find_class, is_module, module_file, module_index
from .normalize import ImportBinding, NameUses, name_uses, normalized_dump
from .versions import distributions_of

Ref = tuple
FORCED_EXTERNAL = frozenset({"luisy", "luigi"})
_STDLIB = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names) | {"__future__"}
_IMPORTS = (ast.Import, ast.ImportFrom)


@dataclass(frozen=True, order=True)
class CodePart:
    """One piece of code a hash covers: ``kind`` (class, function, constant, module),
    its dotted ``name``, the ``file`` it is written in (relative to its package's parent
    directory) and the digest of its normalised source."""

    name: str
    kind: str
    file: str
    digest: str


@dataclass(frozen=True)
class Closure:
    """Everything a class's hash is made of, except external versions.

    ``root`` is the class itself, ``parts`` the same-package definitions it uses
    (their digests are ``digests``)."""

    root_digest: str
    digests: frozenset[str]
    externals: frozenset[str]
    stamps: tuple[tuple[str, Stamp], ...]
    root: CodePart | None = None
    parts: tuple[CodePart, ...] = ()


def home_package(module: str) -> str:
    """The package whose code counts as the task's own (its top-level package).

    Tasks shipped inside luisy or luigi themselves (examples) use their
    second-level package, so the framework stays an external dependency.
    """
    parts = module.split(".")
    if parts[0] in FORCED_EXTERNAL and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def classify(module: str, home: str) -> str:
    """``"local"``, ``"external"`` or ``"stdlib"`` for a module seen from ``home``."""
    if module == home or module.startswith(home + "."):
        return "local"
    top = module.partition(".")[0]
    if top in FORCED_EXTERNAL:
        return "external"
    if top in _STDLIB:
        return "stdlib"
    if distributions_of(top):
        return "external"
    # First-party code that is not installed (a sibling top-level module, say)
    # is hashed by its source like the task's own package.
    return "local" if module_file(top) is not None else "stdlib"


def _absolute(index: ModuleIndex, stmt: ast.ImportFrom) -> str | None:
    if not stmt.level:
        return stmt.module
    base = index.package.split(".") if index.package else []
    if stmt.level - 1 > len(base) or (stmt.level - 1 == len(base) and not stmt.module):
        return None
    base = base[: len(base) - (stmt.level - 1)]
    if stmt.module:
        base.append(stmt.module)
    return ".".join(base) or None


def _module_ref(module: str, path: tuple[str, ...], home: str) -> Ref | None:
    kind = classify(module, home)
    if kind == "local":
        return ("module", module, path)
    if kind == "external":
        return ("ext", module.partition(".")[0])
    return None


def _import_refs(
    index: ModuleIndex, binding: ImportBinding, paths: set[tuple[str, ...]], home: str
) -> list[Ref]:
    stmt, alias = binding
    refs: list[Ref | None] = []
    if isinstance(stmt, ast.Import):
        target = alias.name if alias.asname else alias.name.partition(".")[0]
        refs = [_module_ref(target, path, home) for path in sorted(paths)]
    else:
        base = _absolute(index, stmt)
        if base is None:
            return []
        kind = classify(base, home)
        if kind == "external":
            refs = [("ext", base.partition(".")[0])]
        elif kind == "local":
            refs = [("bind", base, alias.name, path) for path in sorted(paths)]
    return [ref for ref in refs if ref is not None]


def _resolve(index: ModuleIndex, uses: NameUses, home: str) -> list[Ref]:
    refs: list[Ref] = []
    for name in sorted(uses.paths):
        paths = uses.paths[name]
        if name in uses.imports:
            for binding in uses.imports[name]:
                refs.extend(_import_refs(index, binding, paths, home))
        elif name in index.bindings:
            refs.extend(("bind", index.name, name, path) for path in sorted(paths))
        # else: a builtin, or a name created dynamically: nothing to follow
    return refs


def _digest(nodes: Sequence[ast.AST]) -> str:
    hasher = xxhash.xxh3_128()
    for node in nodes:
        hasher.update(normalized_dump(node).encode("utf-8"))
        hasher.update(b"\n")
    return hasher.hexdigest()


_KINDS = ((ast.ClassDef, "class"), ((ast.FunctionDef, ast.AsyncFunctionDef), "function"))


def _kind(definitions: Sequence[ast.AST]) -> str:
    """What a top-level binding is, by its last definition."""
    for types, kind in _KINDS:
        if isinstance(definitions[-1], types):
            return kind
    return "constant"


def display_file(index: ModuleIndex) -> str:
    """The module's file relative to the directory its top-level package lives in."""
    depth = index.name.count(".") + (2 if index.is_package else 1)
    parts = os.path.normpath(index.path).split(os.sep)
    return "/".join(parts[-depth:])


def _analyse_bind(index: ModuleIndex, name: str, path: tuple[str, ...], home: str):
    statements = index.bindings.get(name, [])
    if not statements:
        submodule = f"{index.name}.{name}"
        if index.is_package and is_module(submodule):
            return None, [("module", submodule, path)]
        return None, []
    definitions = [s for s in statements if not isinstance(s, _IMPORTS)]
    refs: list[Ref] = []
    for stmt in statements:
        if isinstance(stmt, _IMPORTS):
            for alias in stmt.names:
                if (alias.asname or (alias.name.partition(".")[0] if isinstance(stmt, ast.Import) else alias.name)) == name:
                    refs.extend(_import_refs(index, (stmt, alias), {path}, home))
    if not definitions:
        return None, refs
    return _digest(definitions), _resolve(index, name_uses(definitions), home) + refs


def _analyse_module(index: ModuleIndex, path: tuple[str, ...], home: str):
    if not path:
        return _digest([index.tree]), _resolve(index, name_uses([index.tree]), home)
    head, rest = path[0], path[1:]
    defined_here = any(not isinstance(s, _IMPORTS) for s in index.bindings.get(head, []))
    submodule = f"{index.name}.{head}"
    if index.is_package and not defined_here and is_module(submodule):
        return None, [("module", submodule, rest)]
    return None, [("bind", index.name, head, rest)]


def _analyse(ref: Ref, index: ModuleIndex, home: str) -> tuple[str | None, list[Ref]]:
    key = (ref, home)
    if key in index.memo:
        return index.memo[key]
    if index.star_imports:
        imported, line = index.star_imports[0]
        raise StarImportError(index.name, imported, line)
    kind = ref[0]
    if kind == "cls":
        node = find_class(index, ref[2])
        if node is None:
            raise CodeHashError(f"cannot find class {ref[2]!r} in the source of module {ref[1]!r}")
        result = (_digest([node]), _resolve(index, name_uses([node]), home))
    elif kind == "bind":
        result = _analyse_bind(index, ref[2], ref[3], home)
    else:
        result = _analyse_module(index, ref[2], home)
    index.memo[key] = result
    return result


def collect(module: str, qualname: str) -> Closure:
    """Walk everything class ``module.qualname`` uses; cycles are visited once."""
    home = home_package(module)
    root: Ref = ("cls", module, qualname)
    seen = {root}
    pending = [root]
    digests: set[str] = set()
    externals: set[str] = set()
    stamps: dict[str, Stamp] = {}
    root_digest = ""
    root_part: CodePart | None = None
    parts: set[CodePart] = set()
    indexes: dict[str, ModuleIndex | None] = {}  # one stat per module per walk
    while pending:
        ref = pending.pop()
        if ref[0] == "ext":
            externals.add(ref[1])
            continue
        if ref[1] not in indexes:
            indexes[ref[1]] = module_index(ref[1])
        index = indexes[ref[1]]
        if index is None:
            if ref[0] == "cls":
                raise CodeHashError(f"cannot read the source of module {module!r}")
            continue  # a compiled module with no Python source: nothing to hash
        stamps[index.path] = index.stamp
        digest, deps = _analyse(ref, index, home)
        if ref is root:
            root_digest = digest or ""
            root_part = CodePart(f"{module}.{qualname}", "class", display_file(index), root_digest)
        elif digest:
            digests.add(digest)
            parts.add(_part(ref, index, digest))
        for dep in deps:
            if dep not in seen:
                seen.add(dep)
                pending.append(dep)
    digests.discard(root_digest)
    return Closure(
        root_digest=root_digest,
        digests=frozenset(digests),
        externals=frozenset(externals),
        stamps=tuple(sorted(stamps.items())),
        root=root_part,
        parts=tuple(sorted(p for p in parts if p.digest != root_digest)),
    )


def _part(ref: Ref, index: ModuleIndex, digest: str) -> CodePart:
    """The labelled part for a reference whose analysis gave ``digest``."""
    if ref[0] == "bind":
        kind = _kind([s for s in index.bindings[ref[2]] if not isinstance(s, _IMPORTS)])
        return CodePart(f"{index.name}.{ref[2]}", kind, display_file(index), digest)
    return CodePart(index.name, "module", display_file(index), digest)
