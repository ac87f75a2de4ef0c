"""Where the cloud is: the remote store of this process and the one way to drive it.

The remote is picked by ``--remote URL`` / ``Config remote``, else by the environment
(``LUISY_REMOTE``, the Azure variables, the embedded local default), through
``luisy_sync.stores``. Stores are made on the bridge loop (``bridge.resource``), so a
forked luigi worker gets a fresh store on first use and never a parent's connections.

:meth:`CloudSession.call` is the only caller of the bridge: coroutines raise the
engine's errors, and this module alone turns them into luisy's one-line CloudError.

Layout in the store: one folder per project. Output key ``/proj/interim/X.pkl`` is the
object ``proj/interim/X.pkl`` (its latest upload); the project's cloud hash file is
``proj/.luisy.hash``, its versions index ``proj/.luisy.versions``; content by digest lives
store-wide in ``.luisy-cas/`` (see :mod:`luisy.versions`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from luisy.errors import CloudError, CloudHashError, CorruptCloudHash, NotRecorded
from luisy_sync.bridge import SyncBridge, get_bridge
from luisy_sync.errors import AuthError, ContainerNotFound, StoreError, SyncError, one_line
from luisy_sync.retry import RetryPolicy, call_with_retry
from luisy_sync.stores.base import Store
from luisy_sync.transfer import first_error

T = TypeVar("T")

CHECK_POLICY = RetryPolicy(max_attempts=3, base=0.2, cap=1.0, deadline=8.0)
"""Short, bounded retries for the early store check (a dead endpoint fails fast)."""

_ENV_VARS = (
    "LUISY_REMOTE", "AZURE_STORAGE_CONNECTION_STRING", "LUISY_AZURE_ACCOUNT_NAME",
    "LUISY_AZURE_STORAGE_KEY", "LUISY_AZURE_ENDPOINT", "LUISY_AZURE_CONTAINER_NAME",
    "LUISY_AZURE_SAS_URL", "AZURE_STORAGE_SAS_URL", "LUISY_LOCAL_REMOTE", "XDG_DATA_HOME",
)


def _env_fingerprint() -> str:
    """A digest of the settings that select the store (so a changed setting means a new store):
    the environment with luisy's Azure settings (flags, ``Config``) applied."""
    from luisy.config import cloud_environment

    env = cloud_environment()
    h = hashlib.sha256()
    for var in _ENV_VARS:
        h.update(f"{var}={env.get(var, '')}\0".encode())
    return h.hexdigest()[:16]


def _describe_and_factory(remote: str | None) -> tuple[str, Callable[[], Store]]:
    from luisy.config import azure_settings_problem, cloud_environment
    from luisy_sync.stores.url import describe_store_source, open_store, store_from_env

    env = cloud_environment()
    try:
        if remote:
            return f"{remote.split('?', 1)[0]} (from --remote)", lambda: open_store(remote, env=env)
        problem = azure_settings_problem(env)
        if problem:
            raise CloudError(problem)
        return describe_store_source(env=env), lambda: store_from_env(env=env)
    except SyncError as exc:
        raise CloudError(f"cloud remote misconfigured: {one_line(exc, with_type=False)}") from None


def _as_cloud_error(exc: BaseException, description: str, checking: bool) -> BaseException:
    """luisy's one-line error for an engine error (others, CloudErrors included, are
    returned as they are)."""
    if isinstance(exc, CorruptCloudHash):
        return CloudHashError(exc.where, exc.reason)
    if isinstance(exc, NotRecorded):
        return CloudError(str(exc))
    if checking:
        if isinstance(exc, AuthError):
            return CloudError(f"the cloud remote rejected the credentials: {one_line(exc, with_type=False)}")
        if isinstance(exc, StoreError):
            return CloudError(f"cannot reach the cloud remote: {one_line(exc, with_type=False)}")
        if isinstance(exc, SyncError):
            return CloudError(f"cloud remote unusable: {one_line(exc, with_type=False)}")
        if isinstance(exc, OSError):
            return CloudError(f"cannot reach the cloud remote {description}: {one_line(exc)}")
        return exc
    if isinstance(exc, (SyncError, OSError)):
        return CloudError(f"cloud sync failed ({description}): {one_line(exc, with_type=False)}")
    return exc


@dataclass
class CloudSession:
    """The remote store of this process, the bridge that drives it, and known code hashes.

    ``store()`` returns the store made on the current bridge loop (fresh after a fork).
    ``current_hashes`` (output key -> code hash) is filled by a luisy run so that later
    uploads (e.g. per task) know which hash to record without hashing code again.
    """

    remote: str | None
    description: str
    factory: Callable[[], Store]
    current_hashes: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def bridge(self) -> SyncBridge:
        """The process-wide bridge (a forked child has a new one)."""
        return get_bridge()

    def store(self) -> Store:
        """The store for this session on the bridge loop."""
        key = ("luisy.cloud.store", self.remote, self.fingerprint)
        try:
            store: Store = self.bridge.resource(key, self.factory)
        except SyncError as exc:
            raise CloudError(f"cannot open the cloud remote: {one_line(exc, with_type=False)}") from None
        return store

    def call(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Run the coroutine function ``fn`` on the bridge loop and wait for it; engine
        errors (the first of a group) become one-line CloudErrors."""
        return self._call(False, fn, *args, **kwargs)

    def _call(self, checking: bool, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        try:
            return cast(T, self.bridge.run(cast(Callable[..., Any], fn), *args, **kwargs))
        except BaseException as raised:
            exc = first_error(raised) if isinstance(raised, BaseExceptionGroup) else raised
            translated = _as_cloud_error(exc, self.description, checking)
            if isinstance(translated, CloudError):
                raise translated from None
            raise

    def check(self, create: bool = False) -> bool:
        """Fail early with a CloudError when the store is unusable.

        Returns False when the container does not exist (and ``create`` is off), True
        otherwise. Bad credentials, a missing account or an unreachable endpoint raise.
        """
        store = self.store()

        async def probe() -> bool:
            try:
                await call_with_retry(store.ensure_container, create, policy=CHECK_POLICY,
                                      describe=f"check {store.url}")
            except ContainerNotFound:
                return False
            return True

        return self._call(True, probe)


_lock = threading.Lock()
_sessions: dict[tuple[str | None, str], CloudSession] = {}
_current: CloudSession | None = None


def open_session(remote: str | None = None) -> CloudSession:
    """The session for ``remote`` (None: the environment's remote), made current.

    Sessions are cached per remote and environment; a changed environment gives a new one.
    """
    global _current
    if remote is None:
        from luisy.config import Config

        remote = Config().get_param("remote") or None
    fingerprint = _env_fingerprint()
    with _lock:
        session = _sessions.get((remote, fingerprint))
        if session is None:
            description, factory = _describe_and_factory(remote)
            session = CloudSession(remote, description, factory, fingerprint=fingerprint)
            _sessions[(remote, fingerprint)] = session
        _current = session
    return session


def current_session() -> CloudSession:
    """The session the last run (or ``open_session``) used; opens the default one if none."""
    session = _current
    if session is None or session.fingerprint != _env_fingerprint():
        return open_session()
    return session
