"""What an HTTP/1.1 answer of ``luisy_sync.stores.http1`` is: its ``Headers`` (looked up
without regard to case), the ``Response``, and ``IncompleteBody`` for a body cut short."""

from __future__ import annotations

from typing import Iterator, Mapping, overload

__all__ = ["Headers", "IncompleteBody", "Response"]


class IncompleteBody(ConnectionError):
    """The connection ended before the whole response body arrived."""


class Headers(Mapping[str, str]):
    """Response headers: lookups are case-insensitive, iteration keeps the sent case."""

    __slots__ = ("_raw", "_map")

    def __init__(self, raw: list[tuple[str, str]]):
        self._raw = raw
        self._map = {k.lower(): v for k, v in raw}

    @overload  # type: ignore[override]  # keys are names (str); no other default types
    def get(self, name: str, /) -> str | None: ...

    @overload
    def get(self, name: str, /, default: str) -> str: ...

    def get(self, name: str, /, default: str | None = None) -> str | None:
        return self._map.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]  # the sent pairs, in order
        return list(self._raw)

    def __repr__(self) -> str:
        return f"Headers({self._raw!r})"


class Response:
    """One answer: ``status``, ``reason``, ``headers`` and the whole ``body``."""

    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes | bytearray):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
