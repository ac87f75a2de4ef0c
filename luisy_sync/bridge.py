"""The bridge: the only place where synchronous code meets the event loop.

A ``SyncBridge`` runs one event loop in a daemon thread (started lazily) and lets any
thread run a coroutine function on it and block until it finishes::

    report = get_bridge().run(luisy_sync.push, "out/", store=store)   # or run_sync(...)

It works from plain threads, from many threads at once, and from a thread that is
itself running an asyncio loop (the bridge loop is a different one). Objects bound to
a loop, such as stores holding an aiohttp session, must be created on the bridge loop
and cached per loop generation; ``bridge.resource(key, factory)`` does exactly that::

    store = bridge.resource(("store", url), lambda: open_store(url))

After ``os.fork()`` the child never touches the parent's loop or connections: the
inherited bridge state is dropped and a new loop starts on first use
(``loop_generation`` changes, and ``resource`` makes fresh objects). ``close()`` closes
the resources and stops the loop; the process-wide bridge is closed at exit.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import inspect
import itertools
import logging
import os
import threading
import weakref
from typing import Any, Awaitable, Callable, Hashable, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

log = logging.getLogger(__name__)

T = TypeVar("T")

_generations = itertools.count(1)
_instances: "weakref.WeakSet[SyncBridge]" = weakref.WeakSet()
_orphans: list[Any] = []  # objects a forked child inherited; kept alive, never closed


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


class SyncBridge:
    """An event loop in a daemon thread that blocking callers submit coroutines to."""

    def __init__(self, backend: str = "asyncio", *, name: str = "luisy-sync-bridge"):
        self.backend = backend
        self.name = name
        self._lock = threading.RLock()
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._resources: dict[Hashable, Any] = {}
        self._pid = os.getpid()
        self.loop_generation = 0
        """Changes whenever a new loop starts (first use, after close(), after a fork)."""
        _instances.add(self)

    # -- public API ---------------------------------------------------------------
    def run(self, fn: Callable[..., Awaitable[T] | T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the bridge loop (awaiting it when it returns an
        awaitable); block until done; return its result or raise its exception. If the
        calling thread is interrupted (KeyboardInterrupt), the task is cancelled."""
        portal = self._ensure_portal()
        future = portal.start_task_soon(_invoke, fn, args, kwargs)
        try:
            result: T = future.result()
            return result
        except BaseException:
            future.cancel()
            raise

    def resource(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        """The object ``factory()`` made on the current bridge loop for ``key``; made on
        first use, again after a new loop starts. ``factory`` may be async. Resources
        with a ``close()``/``aclose()`` method are closed by ``close()``."""
        self._ensure_portal()
        with self._lock:
            generation = self.loop_generation
            if key in self._resources:
                return self._resources[key]
            obj = self.run(factory)
            if self.loop_generation == generation:
                self._resources[key] = obj
            return obj

    @property
    def running(self) -> bool:
        """True while this process has a live bridge loop."""
        return self._portal is not None and self._pid == os.getpid()

    def close(self) -> None:
        """Close the resources, stop the loop and join its thread (idempotent)."""
        with self._lock:
            if self._pid != os.getpid():
                self._forget_after_fork()
            portal, thread, resources = self._portal, self._thread, self._resources
            self._portal, self._thread, self._resources = None, None, {}
        if portal is None:
            return
        for key, obj in resources.items():
            closer = getattr(obj, "aclose", None) or getattr(obj, "close", None)
            if callable(closer):
                try:
                    future = portal.start_task_soon(_invoke, closer, (), {})
                    future.result(timeout=30)
                except BaseException as exc:  # closing must go on for the others
                    log.warning("closing bridge resource %r failed: %s", key, exc)
        try:
            portal.call(portal.stop, True)
        except RuntimeError:
            pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def __enter__(self) -> "SyncBridge":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------
    def _ensure_portal(self) -> BlockingPortal:
        if self._pid != os.getpid():
            self._forget_after_fork()
        portal = self._portal
        if portal is None:
            with self._lock:
                if self._portal is None:
                    self._start()
                portal = self._portal
        assert portal is not None
        if self._thread is threading.current_thread():
            raise RuntimeError("SyncBridge.run was called from inside the bridge loop; "
                               "await the coroutine directly instead")
        return portal

    def _start(self) -> None:
        ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def main() -> None:
            try:
                anyio.run(serve, backend=self.backend)
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)

        thread = threading.Thread(target=main, name=self.name, daemon=True)
        thread.start()
        self._portal = ready.result()
        self._thread = thread
        self.loop_generation = next(_generations)

    def _forget_after_fork(self) -> None:
        """In a forked child: drop (never use, never close) the parent's loop state."""
        if self._pid == os.getpid():
            return
        _orphans.extend([self._portal, self._thread, self._resources])
        self._lock = threading.RLock()
        self._portal, self._thread, self._resources = None, None, {}
        self._pid = os.getpid()
        self.loop_generation = 0


_global_lock = threading.Lock()
_global_bridge: SyncBridge | None = None


def get_bridge() -> SyncBridge:
    """The process-wide bridge (a fresh one in a forked child)."""
    global _global_bridge
    bridge = _global_bridge
    if bridge is None:
        with _global_lock:
            if _global_bridge is None:
                _global_bridge = SyncBridge()
            bridge = _global_bridge
    return bridge


def run_sync(fn: Callable[..., Awaitable[T] | T], /, *args: Any, **kwargs: Any) -> T:
    """``get_bridge().run(fn, *args, **kwargs)``."""
    return get_bridge().run(fn, *args, **kwargs)


def _after_fork_in_child() -> None:
    global _global_bridge, _global_lock
    _global_lock = threading.Lock()
    for bridge in list(_instances):
        bridge._forget_after_fork()
    _global_bridge = None


def _close_at_exit() -> None:
    bridge = _global_bridge
    if bridge is not None and bridge._pid == os.getpid():
        bridge.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
