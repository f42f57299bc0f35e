"""Client-side rate limiting: when may the next request start?

:class:`RateLimiter` is the small interface the client depends on; :class:`LocalRateLimiter`
is the in-process implementation. Another implementation (one shared across processes, say)
plugs in as ``KeyAPIClient(rate_limiter=...)``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol, runtime_checkable

from aiolimiter import AsyncLimiter

__all__ = ["DEFAULT_HEADROOM", "DEFAULT_TOLERANCE", "LocalRateLimiter", "RateLimiter"]

#: Fraction of the budget left unused by default, to absorb network jitter (see below).
DEFAULT_HEADROOM = 0.02
#: Seconds a start may come before its slot, so that a late wake-up is made up for.
DEFAULT_TOLERANCE = 0.002


@runtime_checkable
class RateLimiter(Protocol):
    """Decides when a request may start. Every attempt, retries included, asks first."""

    @property
    def qps(self) -> float:
        """The budget: request starts per second."""
        ...

    async def acquire(self) -> None:
        """Wait until one request may start now, and count it as started."""
        ...

    async def penalize(self, seconds: float) -> None:
        """Start nothing for ``seconds`` from now (the server answered 429)."""
        ...


class LocalRateLimiter:
    """Paces request starts evenly: at most ``qps`` starts in any sliding one-second window.

    Guarantee: permits are scheduled ``interval = 1 / (qps * (1 - headroom))`` seconds apart
    on the event loop's clock and granted in FIFO order; a permit may come at most
    ``tolerance`` before its slot (so a late wake-up of the loop is made up for instead of
    lost), never earlier, and there is no burst at start-up or after a pause. So any
    one-second window, sliding or fixed, holds at most ``floor((1 + tolerance) / interval)
    + 1`` starts, which is at most ``qps`` (for a fractional qps, ``ceil(qps)``: 2.5 a second
    on average puts 3 in some windows) while ``tolerance`` is well below ``headroom``
    seconds. The rest of the headroom (18 ms of each second at the defaults) absorbs the
    jitter between our start times and the server's arrival times. :meth:`penalize` pauses
    all permits, which is how one task's 429 slows the whole client.

    Implementation: a leaky bucket draining at ``1 / interval`` with a capacity of
    ``1 + tolerance / interval`` is exactly GCRA with that tolerance: aiolimiter's
    ``AsyncLimiter`` configured so. (``AsyncLimiter(qps, 1)``, by contrast, starts empty and
    lets about 2 x qps through in its first second.) A FIFO lock in front keeps at most
    one waiter inside the bucket and lets the pause be applied in order.
    """

    def __init__(
        self,
        qps: float,
        *,
        headroom: float = DEFAULT_HEADROOM,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        if not (isinstance(qps, (int, float)) and math.isfinite(qps) and qps > 0):
            raise ValueError(f"qps must be a positive number, got {qps!r}")
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {headroom!r}")
        self._qps = float(qps)
        self.interval = 1.0 / (self._qps * (1.0 - headroom))
        # The window bound needs only 0 <= tolerance (and tolerance well under headroom
        # seconds); at a high qps it may span several intervals, which is fine.
        if not (math.isfinite(tolerance) and 0 <= tolerance <= 1):
            raise ValueError(f"tolerance must be in [0, 1] seconds, got {tolerance!r}")
        self.tolerance = tolerance
        capacity = 1.0 + tolerance / self.interval
        self._bucket = AsyncLimiter(capacity, capacity * self.interval)
        self._lock = asyncio.Lock()
        self._resume_at = 0.0

    @property
    def qps(self) -> float:
        """The configured budget in request starts per second."""
        return self._qps

    async def acquire(self) -> None:
        """Wait for the next evenly paced slot (FIFO), honouring any pause."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            while True:
                await self._bucket.acquire()
                delay = self._resume_at - loop.time()
                if delay <= 0:
                    return
                # Paused: wait it out, then take a fresh slot so the pause ends with one
                # start, not with a start right after the slot taken before the pause.
                await asyncio.sleep(delay)

    async def penalize(self, seconds: float) -> None:
        """Start nothing for ``seconds`` from now; longer pauses already set win."""
        loop = asyncio.get_running_loop()
        self._resume_at = max(self._resume_at, loop.time() + max(0.0, seconds))

    def __repr__(self) -> str:
        return (
            f"LocalRateLimiter(qps={self._qps:g}, interval={self.interval:.4f}s, "
            f"tolerance={self.tolerance:g}s)"
        )
