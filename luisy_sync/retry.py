"""The one retry policy of luisy_sync: capped exponential backoff with full jitter.

Stores never retry; every store request the engine makes goes through
``call_with_retry``. Only errors marked retryable are retried (``TransientError`` and
``ShortReadError``, i.e. a truncated ranged read); anything else is raised at once.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

import anyio

T = TypeVar("T")

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 30.0
"""Longest wait honoured from a server's Retry-After hint (seconds)."""


def is_retryable(error: BaseException) -> bool:
    """True when ``error`` may pass if the same request is repeated."""
    return bool(getattr(error, "retryable", False))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one request.

    Attempt ``n`` (0-based) that failed is followed by a sleep of
    ``uniform(0, min(cap, base * 2**n))`` seconds, or by the server's ``retry_after``
    hint (at most 30 s) when it gave one. ``deadline`` bounds the whole call (seconds
    from its first attempt): no retry starts whose sleep would end after it.
    """

    max_attempts: int = 6
    base: float = 0.05
    cap: float = 5.0
    deadline: float | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must not be negative")

    def delay(self, attempt: int, error: BaseException | None = None) -> float:
        """Seconds to sleep after the failed attempt number ``attempt`` (0-based)."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), MAX_RETRY_AFTER)
        return self.rng.uniform(0.0, min(self.cap, self.base * 2 ** attempt))


DEFAULT_POLICY = RetryPolicy()

RetryCallback = Callable[[int, BaseException, float], None]
"""``on_retry(attempt, error, sleep_seconds)``, called before each backoff sleep."""


async def call_with_retry(fn: Callable[..., Awaitable[T]], *args: object,
                          policy: RetryPolicy | None = None, describe: str = "",
                          on_retry: RetryCallback | None = None) -> T:
    """``await fn(*args)``, retrying retryable errors under ``policy``.

    Non-retryable errors propagate immediately; after the last attempt (or when the
    deadline would pass) the last error is raised unchanged. ``describe`` names the
    request in the note attached to that error.
    """
    policy = policy or DEFAULT_POLICY
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return await fn(*args)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            last = attempt + 1 >= policy.max_attempts
            sleep = 0.0 if last else policy.delay(attempt, exc)
            if not last and policy.deadline is not None:
                last = time.monotonic() - started + sleep > policy.deadline
            if last:
                if describe:
                    exc.add_note(f"{describe}: gave up after {attempt + 1} attempt(s)")
                raise
            logger.info("%s failed (%s), retry %d in %.2f s", describe or "request",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__, attempt + 1, sleep)
            if on_retry is not None:
                on_retry(attempt + 1, exc, sleep)
            attempt += 1
        await anyio.sleep(sleep)
