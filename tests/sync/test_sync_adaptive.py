"""The adaptive request budget: the pure rule (AIMD with a memory of the throttle point), and the
limiter applying it (no timing asserts)."""

from __future__ import annotations

import anyio
import pytest

from luisy_sync.adaptive import AdaptiveLimiter, AimdLimit, is_throttle
from luisy_sync.errors import StoreError, TransientError


def test_slow_start_grows_by_one_per_flat_success_up_to_the_cap() -> None:
    rule = AimdLimit(cap=12, initial=4)
    seen = []
    for _ in range(10):
        rule.succeeded(0.010, in_flight=rule.limit)
        seen.append(rule.limit)
    assert seen == [5, 6, 7, 8, 9, 10, 11, 12, 12, 12]


def test_after_a_throttle_growth_is_additive_about_one_per_round() -> None:
    rule = AimdLimit(cap=64, initial=16, first_hold=1)
    rule.succeeded(0.010, in_flight=16)
    assert rule.throttled(rule.epoch) is True
    assert rule.limit == 8 and not rule.slow_start
    for _ in range(8):  # one round of 8 requests
        rule.succeeded(0.010, in_flight=rule.limit)
    assert rule.limit == 9


def _round(rule: AimdLimit, rounds: int = 1) -> None:
    """``rounds`` rounds of flat successes with the limit in use."""
    for _ in range(rounds):
        for _ in range(rule.limit):
            rule.succeeded(0.010, in_flight=rule.limit)


def test_a_throttled_probe_goes_back_to_the_safe_level_and_probes_ever_more_rarely() -> None:
    rule = AimdLimit(cap=32, initial=16)
    rule.throttled(rule.epoch)  # the first throttle halves: 8 is the safe level
    assert (rule.limit, rule.safe, rule.hold) == (8, 8, rule.first_hold)
    _round(rule, rule.first_hold - 1)
    assert rule.limit == 8  # held below the cliff for first_hold rounds
    _round(rule)
    assert rule.limit == 9  # then a probe one step above
    assert rule.throttled(rule.epoch) is True
    assert (rule.limit, rule.safe, rule.hold) == (8, 8, 4 * rule.first_hold)  # no halving
    _round(rule, rule.hold - 1)
    assert rule.limit == 8
    _round(rule)
    assert rule.limit == 9
    for _ in range(5):  # a server that always sheds the 9th request: the hold stops growing
        rule.throttled(rule.epoch)
        assert rule.limit == 8
        _round(rule, rule.hold)
        assert rule.limit == 9
    assert rule.hold == rule.max_hold


def test_a_probe_that_holds_becomes_the_safe_level_and_the_next_follows_a_round_later() -> None:
    rule = AimdLimit(cap=32, initial=16, first_hold=1)
    rule.throttled(rule.epoch)
    _round(rule)
    assert rule.limit == 9
    _round(rule)  # 9 held for a round: safe, and the next probe
    assert (rule.limit, rule.safe) == (10, 9)
    _round(rule)
    assert (rule.limit, rule.safe) == (11, 10)
    rule.throttled(rule.epoch)
    assert (rule.limit, rule.safe, rule.hold) == (10, 10, 4)


def test_a_throttle_at_the_safe_level_halves_it() -> None:
    rule = AimdLimit(cap=32, initial=16)
    rule.throttled(rule.epoch)
    assert rule.limit == 8
    rule.throttled(rule.epoch)  # throttled without probing: the server got busier
    assert (rule.limit, rule.safe, rule.hold) == (4, 4, rule.first_hold)


def test_rising_latency_holds_the_limit() -> None:
    rule = AimdLimit(cap=64, initial=10)
    rule.succeeded(0.010, in_flight=10)
    before = rule.value
    for _ in range(20):
        rule.succeeded(0.100, in_flight=rule.limit)  # 10x the best: a queue is building
    assert rule.value == before


def test_an_unused_limit_does_not_grow() -> None:
    rule = AimdLimit(cap=64, initial=10)
    for _ in range(20):
        rule.succeeded(0.010, in_flight=2)
    assert rule.limit == 10


def test_a_rounds_throttles_take_the_limit_to_what_the_server_accepted() -> None:
    rule = AimdLimit(cap=64, initial=32)
    epoch = rule.epoch  # 32 requests started in this round, 20 of them throttled
    decreased = [rule.throttled(epoch, 32) for _ in range(20)]
    assert decreased[0] is True and rule.limit == 12 and rule.safe == 12  # 32 - 20 accepted
    assert decreased.count(True) == 5  # halved to 16, then 15, 14, 13, 12
    assert rule.throttled(rule.epoch) is True and rule.limit == 6  # a later round's throttle halves


def test_a_server_that_sheds_all_but_8_of_32_gets_8_in_one_round() -> None:
    rule = AimdLimit(cap=32, initial=32)
    epoch = rule.epoch
    for _ in range(24):
        rule.throttled(epoch, 32)
    assert rule.limit == 8 and rule.safe == 8 and rule.decreases == 1


def test_a_round_lowers_at_most_two_halvings_and_timeouts_only_halve() -> None:
    rule = AimdLimit(cap=32, initial=32)
    epoch = rule.epoch
    for _ in range(32):  # everything 503: no lower than a quarter of the round
        rule.throttled(epoch, 32)
    assert rule.limit == 8
    rule = AimdLimit(cap=32, initial=32)
    epoch = rule.epoch
    assert [rule.throttled(epoch, 32, explicit=False) for _ in range(32)].count(True) == 1
    assert rule.limit == 16  # a burst of timeouts: one halving, as before


def test_without_an_in_flight_count_the_round_is_the_limit_before_the_decrease() -> None:
    rule = AimdLimit(cap=32, initial=32)
    epoch = rule.epoch
    for in_flight in (None, 0, None, None):  # the limit (32) stands in: 32 - 4 accepted
        rule.throttled(epoch, in_flight)
    assert rule.round_level == 32 and rule.limit == 16
    for _ in range(20):
        rule.throttled(epoch)
    assert rule.limit == 8  # 32 - 24


def test_throttles_of_older_rounds_do_not_count() -> None:
    rule = AimdLimit(cap=32, initial=32)
    first = rule.epoch
    rule.throttled(first, 32)  # -> 16
    rule.throttled(rule.epoch, 16)  # a request of the next round: -> 8
    assert rule.limit == 8
    assert rule.throttled(first, 32) is False and rule.limit == 8  # two rounds back: ignored


def test_limit_stays_between_floor_and_cap() -> None:
    rule = AimdLimit(cap=4, initial=100, floor=2)
    assert rule.limit == 4
    for _ in range(10):
        rule.throttled(rule.epoch)
    assert rule.limit == 2
    with pytest.raises(ValueError):
        AimdLimit(cap=0)
    with pytest.raises(ValueError):
        AimdLimit(cap=4, floor=5)


@pytest.mark.parametrize("error, throttle", [
    (TransientError("busy", status=503), True), (TransientError("slow down", status=429), True),
    (TransientError("connection to x: no answer", timed_out=True), True), (TimeoutError(), True),
    (TransientError("a message that merely says timed out"), False),  # messages are never parsed
    (TransientError("reset", status=500), False), (StoreError("denied", status=403), False),
])
def test_what_counts_as_a_throttle(error: BaseException, throttle: bool) -> None:
    assert is_throttle(error) is throttle


def test_a_timeout_is_translated_into_a_timed_out_transient_error() -> None:
    import asyncio

    from luisy_sync.stores.azure_errors import translate

    error = translate(asyncio.TimeoutError(), "get 'a'", "http://127.0.0.1:1/acct")
    assert isinstance(error, TransientError) and error.timed_out and is_throttle(error)
    refused = translate(ConnectionRefusedError(), "get 'a'", "http://127.0.0.1:1/acct")
    assert isinstance(refused, TransientError) and not refused.timed_out


async def test_the_limiter_resizes_its_tokens_with_the_rule() -> None:
    limiter = AdaptiveLimiter(16, initial=4)
    assert (limiter.current, limiter.total_tokens) == (4, 16)
    async with anyio.create_task_group() as tg:
        release = anyio.Event()

        async def hold() -> None:
            async with limiter:
                await release.wait()

        for _ in range(4):
            tg.start_soon(hold)
        await anyio.wait_all_tasks_blocked()
        assert limiter.borrowed_tokens == 4
        limiter.observe(limiter.started(), None)  # flat success with the limit in use
        assert limiter.current == 5
        start = limiter.started()
        limiter.observe(start, TransientError("busy", status=503))
        assert limiter.current == 2 and limiter.throttles == 1
        limiter.observe(start, TransientError("busy", status=503))  # the same round, 4 in flight
        assert limiter.current == 2  # 4 - 2 accepted: no lower than the halving
        limiter.observe(start, TransientError("busy", status=503))
        assert limiter.current == 1 and limiter.throttles == 3  # 4 - 3
        release.set()
    async with limiter:  # still usable after shrinking below the tokens that were out
        assert limiter.borrowed_tokens == 1


async def test_a_burst_of_exactly_the_limit_grows_it_by_every_success() -> None:
    """``limit`` requests start together and end one by one (a push's first creates): each ran
    while the limit was in use, so each success counts, as in a steady full pipe."""
    limiter = AdaptiveLimiter(32, initial=8)
    ends = [anyio.Event() for _ in range(8)]

    async def request(end: anyio.Event) -> None:
        async with limiter:
            start = limiter.started()
            await end.wait()
            limiter.observe(start, None)

    async with anyio.create_task_group() as tg:
        for end in ends:
            tg.start_soon(request, end)
        await anyio.wait_all_tasks_blocked()
        for end in ends:  # the last ones end with fewer and fewer requests still in flight
            end.set()
            await anyio.wait_all_tasks_blocked()
    assert limiter.current == 16


async def test_requests_that_never_fill_the_limit_do_not_grow_it() -> None:
    limiter = AdaptiveLimiter(32, initial=8)
    for _ in range(20):  # one at a time, as an idle caller sends them
        async with limiter:
            limiter.observe(limiter.started(), None)
    assert limiter.current == 8
