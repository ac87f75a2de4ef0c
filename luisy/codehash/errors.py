"""Errors raised while hashing task code."""

from __future__ import annotations

from luisy.errors import LuisyError


class CodeHashError(LuisyError):
    """Task code cannot be hashed; the message says why and what to do."""


class StarImportError(CodeHashError):
    """A module on the hashing path uses ``from x import *`` (unsupported)."""

    def __init__(self, module: str, imported: str, line: int) -> None:
        self.module = module
        self.imported = imported
        self.line = line
        super().__init__(
            f"cannot hash task code: module {module!r} uses 'from {imported} import *' "
            f"(line {line}); star imports are not supported, import the names you use explicitly"
        )
