"""RetryPolicy and call_with_retry: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import random

import pytest

from luisy_sync.errors import (IntegrityError, NotFoundError, ShortReadError, StoreError,
                               TransientError)
from luisy_sync.retry import MAX_RETRY_AFTER, RetryPolicy, call_with_retry, is_retryable

FAST = dict(base=0.0005, cap=0.002)


class Flaky:
    """An async callable failing with the given errors, then returning ``value``."""

    def __init__(self, errors: list[BaseException], value: object = "ok"):
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    async def __call__(self, *args: object) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return (self.value, args)


@pytest.mark.parametrize("error, retryable", [
    (TransientError("503"), True),
    (ShortReadError("short"), True),
    (IntegrityError("digest"), False),
    (NotFoundError("gone"), False),
    (StoreError("bad request", status=400), False),
    (ValueError("bug"), False),
])
def test_is_retryable(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable


def test_delay_full_jitter_within_exponential_cap() -> None:
    policy = RetryPolicy(base=0.05, cap=5.0, rng=random.Random(7))
    for attempt in range(12):
        bound = min(5.0, 0.05 * 2 ** attempt)
        samples = [policy.delay(attempt) for _ in range(50)]
        assert all(0.0 <= s <= bound for s in samples)
        assert max(samples) > bound / 4  # really jittered across the range


def test_delay_is_reproducible_with_a_seeded_rng() -> None:
    a = RetryPolicy(rng=random.Random(42))
    b = RetryPolicy(rng=random.Random(42))
    assert [a.delay(n) for n in range(6)] == [b.delay(n) for n in range(6)]


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(rng=random.Random(1))
    assert policy.delay(0, TransientError("429", retry_after=2.5)) == 2.5
    assert policy.delay(0, TransientError("429", retry_after=600)) == MAX_RETRY_AFTER


def test_invalid_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


async def test_transient_errors_are_retried_until_success() -> None:
    fn = Flaky([TransientError("reset"), ShortReadError("short"), TransientError("503")])
    seen: list[int] = []
    result = await call_with_retry(fn, 1, 2, policy=RetryPolicy(**FAST),
                                   on_retry=lambda attempt, err, sleep: seen.append(attempt))
    assert result == ("ok", (1, 2))
    assert fn.calls == 4
    assert seen == [1, 2, 3]


async def test_non_retryable_error_raises_at_once() -> None:
    fn = Flaky([IntegrityError("bad digest")])
    with pytest.raises(IntegrityError):
        await call_with_retry(fn, policy=RetryPolicy(**FAST))
    assert fn.calls == 1


async def test_last_error_is_raised_after_max_attempts() -> None:
    errors = [TransientError(f"fail {i}") for i in range(5)]
    fn = Flaky(errors)
    with pytest.raises(TransientError, match="fail 2") as info:
        await call_with_retry(fn, policy=RetryPolicy(max_attempts=3, **FAST), describe="get x")
    assert fn.calls == 3
    assert any("gave up after 3" in note for note in info.value.__notes__)


async def test_deadline_stops_retrying_early() -> None:
    fn = Flaky([TransientError("slow down", retry_after=1.0)] * 5)
    with pytest.raises(TransientError):
        await call_with_retry(fn, policy=RetryPolicy(deadline=0.5, **FAST))
    assert fn.calls == 1  # the 1 s Retry-After would pass the 0.5 s deadline
