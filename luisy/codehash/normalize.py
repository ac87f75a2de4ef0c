"""Normalised text of AST nodes and the outside names a piece of code reads.

The text form ignores everything that does not change behaviour: docstrings,
comments, formatting, line/column positions, type comments and quote styles.
Fields that are empty or ``None`` are left out, so the text is the same on
Python versions that add new optional fields.  Both walks are iterative, so
deeply nested expressions never hit the recursion limit.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_SKIPPED_FIELDS = frozenset({"ctx", "kind", "type_comment", "type_ignores"})
_DOCSTRING_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _has_docstring(node: ast.AST) -> bool:
    body = getattr(node, "body", None)
    if not isinstance(node, _DOCSTRING_OWNERS) or not body:
        return False
    first = body[0]
    return (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )


def normalized_dump(node: ast.AST) -> str:
    """A canonical text of ``node``: docstrings and positions removed."""
    parts: list[str] = []
    # Each stack entry is (is_literal_text, value).
    stack: list[tuple[bool, object]] = [(False, node)]
    while stack:
        literal, item = stack.pop()
        if literal:
            parts.append(item)  # type: ignore[arg-type]
        elif isinstance(item, ast.AST):
            fields = []
            for name in item._fields:
                if name in _SKIPPED_FIELDS:
                    continue
                value: Any = getattr(item, name, None)
                if name == "body" and _has_docstring(item):
                    value = value[1:]
                if value is None or (isinstance(value, list) and not value):
                    continue
                fields.append((name, value))
            parts.append(type(item).__name__ + "(")
            stack.append((True, ")"))
            for name, value in reversed(fields):
                stack.append((True, ","))
                stack.append((False, value))
                stack.append((True, name + "="))
        elif isinstance(item, list):
            parts.append("[")
            stack.append((True, "]"))
            for value in reversed(item):
                stack.append((True, ","))
                stack.append((False, value))
        else:
            parts.append(repr(item))
    return "".join(parts)


ImportBinding = tuple["ast.Import | ast.ImportFrom", "ast.alias"]


@dataclass
class NameUses:
    """What a piece of code reads from outside itself.

    ``paths[name]`` holds the attribute paths read on ``name`` (``h.f.g`` gives
    ``("f", "g")``; a bare read of ``name`` gives ``()``).  ``imports`` maps the
    names bound by import statements inside the code to those statements.
    """

    paths: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)
    imports: dict[str, list[ImportBinding]] = field(default_factory=dict)


def _bound_by_import(alias: ast.alias, stmt: ast.Import | ast.ImportFrom) -> str:
    if alias.asname:
        return alias.asname
    if isinstance(stmt, ast.Import):
        return alias.name.split(".", 1)[0]
    return alias.name


def name_uses(roots: Sequence[ast.AST]) -> NameUses:
    """Names the ``roots`` read but do not assign themselves (shadowing wins).

    Names assigned anywhere inside the code (arguments, local variables, nested
    definitions, loop targets...) count as local and are not reported, as
    documented: shadowing a module-level name hides it from the hash.
    """
    loaded: dict[str, set[tuple[str, ...]]] = {}
    stored: set[str] = set()
    imports: dict[str, list[ImportBinding]] = {}
    attribute_bases: set[int] = set()  # ids of nodes that are the `.value` of an Attribute
    pending = list(roots)
    root_ids = {id(node) for node in roots}
    while pending:
        node = pending.pop()
        pending.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Attribute):
            attribute_bases.add(id(node.value))
            if id(node) in attribute_bases:
                continue  # a prefix of a longer chain; the longest one is recorded
            path = [node.attr]
            base = node.value
            while isinstance(base, ast.Attribute):
                path.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and isinstance(base.ctx, ast.Load):
                loaded.setdefault(base.id, set()).add(tuple(reversed(path)))
        elif isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load):
                stored.add(node.id)
            elif id(node) not in attribute_bases:
                loaded.setdefault(node.id, set()).add(())
        elif isinstance(node, _SCOPES):
            if id(node) not in root_ids:
                stored.add(node.name)
        elif isinstance(node, ast.arg):
            stored.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    imports.setdefault(_bound_by_import(alias, node), []).append((node, alias))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            stored.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            stored.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            stored.add(node.rest)
    # Ordering of `pending` pops children after parents, so attribute bases are
    # known before their Name child is seen (parents are always expanded first).
    paths = {name: p for name, p in loaded.items() if name not in stored}
    return NameUses(paths=paths, imports=imports)
