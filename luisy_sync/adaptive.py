"""Adaptive concurrency: one request budget that finds what the server allows.

``AimdLimit`` is the pure rule (no clock, no IO), additive increase / multiplicative
decrease in the spirit of TCP congestion control and Netflix's concurrency-limits, with
a memory of where the server started to throttle:

- until the first throttle ("slow start") a request that succeeded, that ran while the
  limit was in use (at some moment of its life) and whose latency was not much above the
  best seen recently (flat latency: no queue is building up at the server), raises the
  limit by 1 (doubling per round);
- from then on the limit holds at the highest level known to run without throttles
  (``safe``) for ``hold`` rounds of requests (``first_hold`` after a halving), then
  probes one step above it; a probe that lasts ``hold`` rounds without a throttle
  becomes the new safe level, and the next probe follows one round later (about +1 per
  round: additive increase);
- a throttled request (429, 503, a timeout) of a probe puts the limit back to the safe
  level (no halving: the server's cliff is just above it) and makes ``hold`` four
  times longer, up to ``max_hold`` rounds, so a server that sheds everything beyond a
  fixed number in flight is probed ever more rarely (each probe costs one request its
  ``Retry-After``);
- a throttle at or below the safe level (the first one, or the server got busier)
  halves the limit, which becomes the new safe level (a throttled request's
  ``Retry-After`` holds up the batch of files it belongs to, so a few probes soon after
  a halving cost more than a slower return to the server's cliff);
- the round that caused a decrease is counted, not answered again: each further 429/503
  (the server's own "too many") of a request that started before the decrease takes the
  limit down to the requests in flight at the decrease less the round's throttles, which
  is what the server accepted, at most two halvings below that level in all. A server
  that sheds all but 8 of 32 requests thus answers with 24 throttles and gets 8 at
  once, not 16 and a second round of throttles, whose ``Retry-After`` each would hold up
  a batch of files (the throttled figure: 0.76x-1.00x of the best fixed concurrency
  before, with 34-35 throttled requests). Timeouts lower the limit only by the halving:
  many at once say more about the network than about the server's load;
- throttles of requests that started before the round that caused the last decrease
  are not counted at all; the limit stays within ``[floor, cap]``; ``cap`` is the
  caller's ``concurrency=``.

``AdaptiveLimiter`` applies it to a dynamic ``anyio.CapacityLimiter`` and is what a
``Transfer`` uses by default; the retry policy still sleeps each throttled request's
``Retry-After`` before it is tried again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TypeGuard

import anyio

INITIAL_LIMIT = 32
"""Requests allowed in flight when a transfer starts (at most its cap, ``concurrency=``,
whose default is 32 too). Behind a 20 ms round trip a W1 push (1000 x 64 KiB) started at
16 spent its first round with the server half idle: started at 32 its medians were
2.062 against 2.158 s, 2.630 against 2.700 s and 2.695 against 2.744 s in three sets of
interleaved jobs, the pull's the same; from 8 a W1 pull took two rounds to reach 32. A
server that allows fewer throttles the surplus of the first round once, which halves
the limit (the throttled figure: 0.97x / 0.98x of the best fixed concurrency, 0 failed)."""

THROTTLE_STATUS = frozenset({429, 503})
"""HTTP statuses that say "too many requests" (a timeout says the same without one)."""


def is_explicit_throttle(error: BaseException) -> bool:
    """True when the server itself said "too many requests" (429/503)."""
    return getattr(error, "status", None) in THROTTLE_STATUS


def is_throttle(error: BaseException) -> bool:
    """True when ``error`` says the server is overloaded (429/503, or no answer in time)."""
    if is_explicit_throttle(error):
        return True
    return isinstance(error, TimeoutError) or bool(getattr(error, "timed_out", False))


@dataclass
class AimdLimit:
    """The rule (see the module docstring); ``value`` is the current limit."""

    cap: int
    initial: int = INITIAL_LIMIT
    floor: int = 1
    tolerance: float = 2.0
    """A latency up to ``tolerance`` times the best recent one counts as flat."""
    backoff: float = 0.5
    first_hold: int = 8
    """Rounds a limit is held after a halving before the first probe above it."""
    max_hold: int = 256
    """The most rounds a limit is held below a probe that was throttled."""
    value: float = field(init=False)
    best_latency: float | None = field(init=False, default=None)
    epoch: int = field(init=False, default=0)
    """Bumped on every decrease; a request remembers the epoch it started in."""
    decreases: int = field(init=False, default=0)
    slow_start: bool = field(init=False, default=True)
    safe: float | None = field(init=False, default=None)
    """The highest limit known to run without throttles (None until the first throttle)."""
    hold: int = field(init=False, default=1)
    """Rounds of requests at a level before the next probe (x4 after each failed probe)."""
    successes: int = field(init=False, default=0)
    """Flat successes since the limit last changed."""
    round_level: int = field(init=False, default=0)
    """Requests in flight when the last decrease happened."""
    round_throttles: int = field(init=False, default=0)
    """Explicit throttles (429/503) of that round so far."""

    def __post_init__(self) -> None:
        if self.cap < 1 or self.floor < 1 or self.floor > self.cap:
            raise ValueError(f"need 1 <= floor <= cap, got floor={self.floor} cap={self.cap}")
        self.value = float(max(self.floor, min(self.cap, self.initial)))

    @property
    def limit(self) -> int:
        """The whole number of requests allowed in flight now."""
        return max(self.floor, min(self.cap, int(self.value)))

    def succeeded(self, latency: float, in_flight: int) -> None:
        """One request finished fine after ``latency`` seconds with ``in_flight`` running."""
        best = self.best_latency
        if best is None or latency < best:
            self.best_latency = best = latency
        else:  # forget a best that is long gone (the path got slower for good)
            self.best_latency = best + (latency - best) * 0.01
        flat = latency <= best * self.tolerance + 0.001
        if not flat or in_flight < self.limit - 1:  # only grow a limit that is actually used
            return
        if self.slow_start:
            self.value = min(float(self.cap), self.value + 1.0)
            return
        self.successes += 1
        if self.successes < self.hold * self.limit or self.value >= self.cap:
            return
        if self.safe is None or self.value > self.safe:  # this probe held: a new safe level
            self.safe = self.value
            self.hold = 1
        self.value = min(float(self.cap), self.value + 1.0)  # probe one step above
        self.successes = 0

    def throttled(self, started_epoch: int, in_flight: int | None = None, explicit: bool = True) -> bool:
        """One request was throttled (``explicit``: a 429/503, not a timeout) with
        ``in_flight`` requests running (None or 0: the limit); returns True when this
        changed the limit."""
        if started_epoch < self.epoch:
            return started_epoch == self.epoch - 1 and explicit and self._count_in_round()
        self.round_level = in_flight or self.limit  # none known: the limit before the decrease
        self.round_throttles = 1 if explicit else 0
        if self.safe is not None and self.value > self.safe:  # a probe failed: back below it
            self.value = self.safe
            self.hold = min(self.max_hold, self.hold * 4)
        else:  # the first throttle, or the server got busier: halve
            self.value = max(float(self.floor), self.value * self.backoff)
            self.safe = self.value
            self.hold = self.first_hold
        self.slow_start = False
        self.successes = 0
        self.epoch += 1
        self.decreases += 1
        return True

    def _count_in_round(self) -> bool:
        """One more explicit throttle of the round that caused the last decrease (see the
        module docstring); returns True when it lowered the limit."""
        self.round_throttles += 1
        accepted = self.round_level - self.round_throttles
        lower = max(float(self.floor), float(accepted), self.round_level * self.backoff * self.backoff)
        if lower >= self.value:
            return False
        self.value = lower
        self.safe = self.value
        self.successes = 0
        return True


class AdaptiveLimiter:
    """A request limiter whose size follows ``AimdLimit``; a drop-in for the
    ``anyio.CapacityLimiter`` methods the engine uses (``async with``, ``acquire_on_behalf_of``,
    ``release_on_behalf_of``, ``total_tokens``), plus ``observe`` for request outcomes."""

    def __init__(self, cap: int, *, initial: int | None = None):
        self.rule = AimdLimit(cap, initial=initial or INITIAL_LIMIT)  # the rule keeps it within [floor, cap]
        self._tokens = anyio.CapacityLimiter(self.rule.limit)
        self.throttles = 0
        self._full = 0
        """How many requests started with the limit (all but one slot) in use."""

    @property
    def total_tokens(self) -> int:
        """The cap (the most requests this limiter will ever allow at once)."""
        return self.rule.cap

    @property
    def current(self) -> int:
        """Requests allowed in flight right now."""
        return self.rule.limit

    @property
    def borrowed_tokens(self) -> int:
        return int(self._tokens.borrowed_tokens)

    async def __aenter__(self) -> None:
        await self._tokens.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._tokens.release()

    async def acquire_on_behalf_of(self, token: object) -> None:
        await self._tokens.acquire_on_behalf_of(token)

    def acquire_on_behalf_of_nowait(self, token: object) -> None:
        """Take a slot for ``token`` now, or raise ``anyio.WouldBlock``."""
        self._tokens.acquire_on_behalf_of_nowait(token)

    def release_on_behalf_of(self, token: object) -> None:
        self._tokens.release_on_behalf_of(token)

    def started(self) -> tuple[float, int, int]:
        """What ``observe`` needs to know about a request that starts now (holding its slot)."""
        full = self._full
        if self.borrowed_tokens >= self.rule.limit - 1:
            self._full += 1
        return time.monotonic(), self.rule.epoch, full

    def observe(self, start: tuple[float, int, int], error: BaseException | None) -> None:
        """Feed one request's outcome (``error`` None: success) into the rule. A request
        during which the limit was in use at some moment (a later one started with all
        slots taken) counts as run at the limit, so a burst of exactly ``limit`` requests
        that end one by one grows it as much as a steady full pipe does."""
        if error is None:
            in_flight = self.borrowed_tokens
            if self._full > start[2]:
                in_flight = max(in_flight, self.rule.limit)
            self.rule.succeeded(time.monotonic() - start[0], in_flight)
        elif is_throttle(error):
            self.throttles += 1
            self.rule.throttled(start[1], self.borrowed_tokens, is_explicit_throttle(error))
        else:
            return
        self._resize()

    def _resize(self) -> None:
        limit = self.rule.limit
        if limit != self._tokens.total_tokens:
            self._tokens.total_tokens = limit


def observed(limiter: object) -> TypeGuard[AdaptiveLimiter]:
    """True when ``limiter`` wants request outcomes (an AdaptiveLimiter)."""
    return isinstance(limiter, AdaptiveLimiter)
