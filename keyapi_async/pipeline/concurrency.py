"""How many requests may be in flight at once.

To sustain ``qps`` when each answer takes ``latency`` seconds, about ``qps * latency``
requests must be in flight (Little's law). Too few and the rate limiter's slots go unused;
too many only costs memory, since the rate limiter still paces every start. So, unless the
user fixes a number, the cap follows the observed latency with generous headroom.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

__all__ = ["InFlightLimit"]


class InFlightLimit:
    """A FIFO semaphore whose size is fixed, or derived from ``qps`` and observed latency.

    Derived size: ``ceil(qps * latency * headroom) + 1``, clamped to ``[floor, ceiling]``,
    where ``qps`` is the current pacing rate (a number, or a function giving it: the rate
    adapts) and ``latency`` an exponentially weighted mean of recent answers (starting
    from ``initial_latency``, a pessimistic prior: too large is harmless, too small
    throttles). Only answers count: a near-instant 429 says nothing about how long an
    answer takes, and would shrink the cap just when requests must wait for permits.
    """

    def __init__(
        self,
        qps: float | Callable[[], float],
        fixed: int | None = None,
        *,
        initial_latency: float = 1.0,
        headroom: float = 2.0,
        floor: int = 2,
        ceiling: int = 1024,
    ) -> None:
        if fixed is not None and (
            not isinstance(fixed, int) or isinstance(fixed, bool) or fixed < 1
        ):
            raise ValueError(f"max_concurrency must be a positive int or None, got {fixed!r}")
        self._qps: Callable[[], float] = qps if callable(qps) else (lambda: qps)
        self._fixed = fixed
        self._latency = initial_latency
        self._headroom = headroom
        self._floor = floor
        self._ceiling = ceiling
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.limit = fixed if fixed is not None else self._derive()

    @property
    def latency(self) -> float:
        """The current latency estimate in seconds."""
        return self._latency

    @property
    def active(self) -> int:
        """Requests holding a slot now."""
        return self._active

    def _derive(self) -> int:
        wanted = math.ceil(self._qps() * self._latency * self._headroom) + 1
        return max(self._floor, min(self._ceiling, wanted))

    async def acquire(self) -> None:
        """Wait for a slot (FIFO)."""
        if self._active < self.limit and not self._waiters:
            self._active += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted a slot just as we were cancelled: hand it on.
                self.release()
            raise

    def release(self, latency: float | None = None) -> None:
        """Give a slot back, with the answer's latency in seconds when it counts."""
        self._active -= 1
        if self._fixed is None:
            if latency is not None:
                # EWMA with alpha 0.2: follows a latency change within a few answers.
                self._latency += 0.2 * (latency - self._latency)
            self.limit = self._derive()  # the rate may have moved too
        while self._waiters and self._active < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self._active += 1
                fut.set_result(None)
