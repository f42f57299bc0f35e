"""Client-side rate limiting: when may the next request start?

:class:`LocalRateLimiter` is the in-process implementation of the
:class:`~keyapi_async.limiting.base.RateLimiter` interface the client depends on.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Final

from .adaptive import AdaptiveRate
from .base import DEFAULT_HEADROOM, QpsSetting, RateLimiter, check_qps

__all__ = ["DEFAULT_HEADROOM", "LocalRateLimiter", "QpsSetting", "RateLimiter", "check_qps"]

#: How early, at most, to wake before a slot (the selector's granularity), then yield.
_EARLY: Final = 0.001


def _now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # read outside a loop (a repr, say): the loop's default clock
        return time.monotonic()


class LocalRateLimiter:
    """Paces request starts: a minimum gap between permits, at an adaptive rate.

    Guarantee, on the event loop's clock: two consecutive permits are never closer than
    ``1 / qps`` seconds (``qps`` the ceiling: the configured number, or ``max_qps`` for
    ``"auto"``); so any one-second window, sliding or fixed, holds at most ``qps``
    starts (``ceil(qps)`` for a fractional qps), and a strict gateway such as nginx
    ``limit_req`` without ``burst`` (one request per ``1 / qps``) never sees two starts
    too close. There is no burst at start-up or after a pause; permits are granted in
    FIFO order.

    The pacing rate ``r`` comes from an :class:`~keyapi_async.adaptive.AdaptiveRate`:
    with a number it is that number until a 429 (:meth:`on_throttle`) lowers it, after
    which it grows back, never above it; with ``"auto"`` it starts at 5 and doubles every
    second of use until the first 429, then settles below the limit the server enforces,
    up to ``max_qps``. :meth:`penalize` pauses every permit (Retry-After).

    The arithmetic is our own rather than aiolimiter's leaky bucket: that bucket bounds the
    starts in a window, not the gap between two of them, which is what a strict gateway checks.

    The schedule is GCRA: permits ``interval = 1 / (r * (1 - headroom))`` apart on
    average, the ``headroom`` (2 %) absorbing the jitter between our start times and the
    server's. A late wake-up of the loop is made up for, but a permit never comes sooner
    than ``1 / peak`` after the previous one, ``peak`` being the highest rate the server
    took: at the ceiling ``r`` itself (so the catch-up is the headroom only); below it,
    after a 429, the rate at the 429 (``w_max``); in slow start, ``r``.
    """

    def __init__(
        self,
        qps: QpsSetting,
        *,
        max_qps: float | None = None,
        headroom: float = DEFAULT_HEADROOM,
        control: AdaptiveRate | None = None,
    ) -> None:
        ceiling, start = check_qps(qps, max_qps)
        if not (isinstance(headroom, (int, float)) and 0 <= headroom < 1):
            raise ValueError(f"headroom must be in [0, 1), got {headroom!r}")
        self.headroom = float(headroom)
        self.auto = qps == "auto"
        #: The adaptive rate; pass your own ``control`` to tune its parameters.
        self.control = control or AdaptiveRate(ceiling, start=start)
        self._lock = asyncio.Lock()
        self._slot: float | None = None  # when the last permit was allowed (its slot)
        self._granted = 0.0  # when the last permit was granted
        self._interval = 0.0  # the average gap at the rate of the last computation
        self._resume_at = -math.inf

    @property
    def qps(self) -> float:
        """The current pacing rate in request starts per second."""
        return self.control.rate(_now())

    @property
    def max_qps(self) -> float:
        """The ceiling: the configured qps, or ``max_qps`` for ``"auto"``."""
        return self.control.ceiling

    @property
    def learned_qps(self) -> float | None:
        """The rate at the last 429 (where the server started refusing), if any."""
        return self.control.learned

    @property
    def interval(self) -> float:
        """The average gap between permits at the current rate, in seconds."""
        return 1.0 / (self.qps * (1.0 - self.headroom))

    def _next_slot(self, now: float) -> float:
        if self._slot is None:
            return self._resume_at
        control = self.control
        self._interval = interval = 1.0 / (control.rate(now) * (1.0 - self.headroom))
        # GCRA: one interval after the last slot, so a late grant is made up for, yet
        # never sooner than 1/peak after the last grant: at the ceiling, within the
        # headroom only; below it (after a 429), down to what the server took before.
        return max(self._slot + interval, self._granted + 1.0 / control.peak(now),
                   self._resume_at)

    async def acquire(self) -> None:
        """Wait for the next slot (FIFO), honouring any pause and the current rate."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            now = loop.time()
            slot = self._next_slot(now)
            if self._slot is None:
                self.control.idle(0.0, now)  # anchors the curve at the first permit
            elif now > slot:
                self.control.idle(now - slot, now)  # nobody wanted the rate meanwhile
            before = None
            while now < slot:
                # The selector sleeps in whole milliseconds, rounded up: sleeping the whole
                # wait would grant ~0.5 ms late on average, lost for good once beyond the
                # headroom (the minimum gap forbids making it up). So wake a little early
                # and yield to the loop until the slot: up to 1 ms, and never more than a
                # fifth of the interval (the CPU it costs). (A clock that did not move,
                # as a simulated one, gets a plain sleep.) Recomputed on waking: a 429 or
                # a pause meanwhile moves the slot later.
                wait = slot - now
                early = min(_EARLY, 0.2 * self._interval)
                if wait > early:
                    await asyncio.sleep(wait - early)
                else:
                    await asyncio.sleep(wait if now == before else 0)
                before, now = now, loop.time()
                slot = self._next_slot(now)
            self._slot = slot
            self._granted = now

    async def penalize(self, seconds: float) -> None:
        """Start nothing for ``seconds`` from now; longer pauses already set win."""
        self._resume_at = max(self._resume_at, _now() + max(0.0, seconds))

    async def on_throttle(self, started_at: float) -> None:
        """A request started at ``started_at`` got a 429: lower the rate, once per event."""
        self.control.throttled(started_at, _now())

    async def seed(self, learned_qps: float) -> bool:
        """Start an ``"auto"`` rate from a limit learned before (a resumed crawl)."""
        return self.control.seed(learned_qps, _now())

    def __repr__(self) -> str:
        mode = "auto" if self.auto else f"{self.control.ceiling:g}"
        return (
            f"LocalRateLimiter(qps={mode}, rate={self.qps:.4g}, "
            f"max_qps={self.control.ceiling:g}, headroom={self.headroom:g})"
        )
