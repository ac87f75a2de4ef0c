"""Stores that wrap another store: forward, rename below a prefix, inject faults, count.

``ForwardingStore`` passes every verb to ``inner`` through one hook (``_forward``), so
a subclass changes every call in one place. The optional batch calls (``put_many``,
``get_many``) are offered exactly when ``inner`` has them, unless ``batch=False``
hides them (then callers fall back to one ``put``/``get`` per object).

- ``PrefixStore``: the objects of ``inner`` below ``prefix/``, named without it.
- ``FaultStore``: fails or delays chosen calls (``Fault`` rules by verb, name, count),
  for tests of retries, failures and interleavings.
- ``CountingStore``: counts calls per verb, the calls in flight and their peak.
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Mapping, Sequence

import anyio

from luisy_sync.stores.base import BytesLike, GetResult, ObjectInfo, PutMode, Store, is_networked

BATCH_VERBS = ("put_many", "get_many")
"""The optional batch capabilities a wrapper forwards when its inner store has them."""

Hook = Callable[[], "Awaitable[None] | None"]
"""A callable run before or after a call; it may return an awaitable (awaited)."""


def _name_of(verb: str, args: tuple[Any, ...]) -> str:
    """The object name (list: the prefix; copy: the source) a call is about; "" for batch
    and container calls."""
    if verb in BATCH_VERBS or not args or not isinstance(args[0], str):
        return ""
    return args[0]


class ForwardingStore:
    """A Store that forwards every call to ``inner``; subclasses override ``_forward``."""

    def __init__(self, inner: Store, *, batch: bool = True):
        self.inner = inner
        self.url = inner.url
        self._batch = batch

    @property
    def networked(self) -> bool:
        """Whether ``inner``'s calls cross a network (``luisy_sync.early_creates``)."""
        return is_networked(self.inner)

    async def _forward(self, verb: str, *args: Any, **kw: Any) -> Any:
        """Every call passes here: ``inner.<verb>(*args, **kw)``."""
        return await getattr(self.inner, verb)(*args, **kw)

    def __getattr__(self, attr: str) -> Any:
        if attr in BATCH_VERBS and self._batch and hasattr(self.inner, attr):
            async def batch(items: Sequence[Any]) -> Any:
                return await self._forward(attr, items)

            return batch
        raise AttributeError(f"{type(self).__name__} has no attribute {attr!r}")

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """``inner.list``."""
        listed: list[ObjectInfo] = await self._forward("list", prefix)
        return listed

    async def head(self, name: str) -> ObjectInfo:
        """``inner.head``."""
        info: ObjectInfo = await self._forward("head", name)
        return info

    async def get(self, name: str, start: int = 0, length: int | None = None) -> GetResult:
        """``inner.get``."""
        got: GetResult = await self._forward("get", name, start, length)
        return got

    async def put(self, name: str, data: BytesLike, *, metadata: Mapping[str, str] | None = None,
                  mode: PutMode = PutMode.OVERWRITE) -> ObjectInfo:
        """``inner.put``."""
        info: ObjectInfo = await self._forward("put", name, data, metadata=metadata, mode=mode)
        return info

    async def put_block(self, name: str, block_id: str, data: BytesLike) -> None:
        """``inner.put_block``."""
        await self._forward("put_block", name, block_id, data)

    async def commit_blocks(self, name: str, block_ids: Sequence[str], *,
                            metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """``inner.commit_blocks``."""
        info: ObjectInfo = await self._forward("commit_blocks", name, block_ids, metadata=metadata)
        return info

    async def copy(self, src: str, dst: str) -> ObjectInfo:
        """``inner.copy``."""
        info: ObjectInfo = await self._forward("copy", src, dst)
        return info

    async def delete(self, name: str, *, etag: str | None = None) -> None:
        """``inner.delete``."""
        await self._forward("delete", name, etag=etag)

    async def ensure_container(self, create: bool = True) -> None:
        """``inner.ensure_container``."""
        await self._forward("ensure_container", create)

    async def close(self) -> None:
        """``inner.close``."""
        await self._forward("close")

    async def __aenter__(self) -> ForwardingStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class PrefixStore(ForwardingStore):
    """The objects of ``inner`` whose names start with ``prefix/``, named without it."""

    def __init__(self, inner: Store, prefix: str, *, batch: bool = True):
        super().__init__(inner, batch=batch)
        self.prefix = prefix.strip("/")
        if not self.prefix:
            raise ValueError("PrefixStore needs a non-empty prefix")
        self.url = f"{inner.url.rstrip('/')}/{self.prefix}"
        self._head = self.prefix + "/"

    def _inner_name(self, name: str) -> str:
        return self._head + name

    def _outer(self, info: ObjectInfo) -> ObjectInfo:
        return replace(info, name=info.name[len(self._head):])

    async def _forward(self, verb: str, *args: Any, **kw: Any) -> Any:
        if verb in ("ensure_container", "close"):
            return await super()._forward(verb, *args, **kw)
        if verb == "put_many":
            items = [(self._inner_name(item[0]), *item[1:]) for item in args[0]]
            results = await super()._forward(verb, items)
            return [r if isinstance(r, Exception) else self._outer(r) for r in results]
        if verb == "get_many":
            return await super()._forward(verb, [self._inner_name(n) for n in args[0]])
        if verb == "copy":
            return self._outer(await super()._forward(verb, *map(self._inner_name, args)))
        result = await super()._forward(verb, self._inner_name(args[0]), *args[1:], **kw)
        if verb == "list":
            return [self._outer(info) for info in result]
        return self._outer(result) if isinstance(result, ObjectInfo) else result


@dataclass
class Fault:
    """A FaultStore rule: the calls it matches and what it does to them.

    Matching calls (``verbs``: one verb, several, or "*"; ``name``: an exact object name
    or a predicate; None: any) are counted; after the first ``skip`` of them, the next
    ``times`` (None: all) are acted on: ``before`` runs, then ``error`` (an exception,
    or a callable making one) is raised instead of the call, or the call goes on,
    ``after`` runs once it succeeded and ``alter`` may replace its result (e.g. a
    listing with extra entries). ``before`` may wait (an ``anyio.Event``, a sleep).
    """

    verbs: str | tuple[str, ...] = "*"
    name: str | Callable[[str], bool] | None = None
    error: BaseException | Callable[[], BaseException] | None = None
    skip: int = 0
    times: int | None = None
    before: Hook | None = None
    after: Hook | None = None
    alter: Callable[[Any], Any] | None = None
    seen: int = field(default=0, init=False)
    """Matching calls so far."""
    hits: int = field(default=0, init=False)
    """Calls acted on so far."""

    def _matches(self, verb: str, name: str) -> bool:
        verbs = (self.verbs,) if isinstance(self.verbs, str) else self.verbs
        if "*" not in verbs and verb not in verbs:
            return False
        if self.name is None:
            return True
        return self.name(name) if callable(self.name) else self.name == name

    def _take(self, verb: str, name: str) -> bool:
        """Count a call; True when this rule acts on it."""
        if not self._matches(verb, name):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.seen > self.skip + self.times):
            return False
        self.hits += 1
        return True

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error if isinstance(self.error, BaseException) else self.error()


async def _run(hook: Hook | None) -> None:
    if hook is not None:
        result = hook()
        if inspect.isawaitable(result):
            await result


class FaultStore(ForwardingStore):
    """Forwards to ``inner`` except where a ``Fault`` rule acts (see Fault)."""

    def __init__(self, inner: Store, *faults: Fault, batch: bool = True):
        super().__init__(inner, batch=batch)
        self.faults = list(faults)

    @property
    def failures(self) -> int:
        """Errors injected so far."""
        return sum(f.hits for f in self.faults if f.error is not None)

    async def _forward(self, verb: str, *args: Any, **kw: Any) -> Any:
        name = _name_of(verb, args)
        acting = [f for f in self.faults if f._take(verb, name)]
        for fault in acting:
            await _run(fault.before)
            fault._raise()
        result = await super()._forward(verb, *args, **kw)
        for fault in acting:
            await _run(fault.after)
            if fault.alter is not None:
                result = fault.alter(result)
        return result


class CountingStore(ForwardingStore):
    """Forwards to ``inner`` and counts: ``calls`` and ``failed`` per verb, ``requests``
    (verb, name) in order, ``now`` in flight and their ``peak``. Only ``verbs`` are
    counted when given; ``delay`` seconds are slept inside every counted call (so
    concurrent calls overlap measurably)."""

    def __init__(self, inner: Store, *, verbs: Sequence[str] | None = None, delay: float = 0.0,
                 batch: bool = True):
        super().__init__(inner, batch=batch)
        self.verbs = None if verbs is None else frozenset(verbs)
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.now = self.peak = 0

    async def _forward(self, verb: str, *args: Any, **kw: Any) -> Any:
        if self.verbs is not None and verb not in self.verbs:
            return await super()._forward(verb, *args, **kw)
        self.calls[verb] += 1
        self.requests.append((verb, _name_of(verb, args)))
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            if self.delay:
                await anyio.sleep(self.delay)
            return await super()._forward(verb, *args, **kw)
        except Exception:
            self.failed[verb] += 1
            raise
        finally:
            self.now -= 1
