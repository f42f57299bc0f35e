"""Server-side per-key QPS limiters.

Each limiter answers one question per arrival: may this request through?
Time is passed in explicitly (the event loop's monotonic clock), so the
limiters are plain synchronous objects that are easy to unit-test.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, Protocol

from keyapi_async.testing.stats import WINDOW_SECONDS

QpsMode = Literal["sliding", "fixed", "token_bucket", "gcra"]
QPS_MODES: tuple[QpsMode, ...] = ("sliding", "fixed", "token_bucket", "gcra")


class Limiter(Protocol):
    """Decides, for one key, whether a request arriving at ``now`` is allowed."""

    def allow(self, now: float) -> bool:
        """Return True to accept the request, False to reject it with 429."""
        ...


class SlidingWindowLimiter:
    """At most ``capacity`` counted arrivals in any window ``(now - 1 s, now]``."""

    def __init__(self, capacity: int, count_rejected: bool) -> None:
        self._capacity = capacity
        self._count_rejected = count_rejected
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Accept if fewer than ``capacity`` counted arrivals in the last second."""
        times = self._times
        # Same comparison as stats.busiest_window so the two agree exactly.
        while times and now - times[0] >= WINDOW_SECONDS:
            times.popleft()
        allowed = len(times) < self._capacity
        if allowed or self._count_rejected:
            times.append(now)
        return allowed


class FixedWindowLimiter:
    """At most ``capacity`` counted arrivals per whole second of the clock.

    This lets through up to twice the limit across a bucket boundary, like
    many real gateways do.
    """

    def __init__(self, capacity: int, count_rejected: bool) -> None:
        self._capacity = capacity
        self._count_rejected = count_rejected
        self._bucket = -1
        self._count = 0

    def allow(self, now: float) -> bool:
        """Accept if the current one-second bucket still has room."""
        bucket = math.floor(now / WINDOW_SECONDS)
        if bucket != self._bucket:
            self._bucket = bucket
            self._count = 0
        allowed = self._count < self._capacity
        if allowed or self._count_rejected:
            self._count += 1
        return allowed


class TokenBucketLimiter:
    """Bucket of ``rate`` tokens (starting full) refilled at ``rate`` tokens per second."""

    def __init__(self, rate: float, count_rejected: bool) -> None:
        self._rate = rate
        self._capacity = max(rate, 1.0)
        self._count_rejected = count_rejected
        self._tokens = self._capacity
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        """Accept if a whole token is available, spending it."""
        if self._last is not None:
            elapsed = max(0.0, now - self._last)
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self._count_rejected:
            # A rejected request still drains the partial token refilled so far,
            # so a client hammering faster than the refill rate stays locked out.
            self._tokens = 0.0
        return False


class GcraLimiter:
    """nginx ``limit_req`` (with ``nodelay``): a leaky bucket in whole milliseconds.

    The same arithmetic as ``ngx_http_limit_req_lookup``: times are truncated to whole
    milliseconds, ``excess`` (in thousandths of a request) drains at ``rate`` per second
    and each accepted request adds one; a request that would take ``excess`` above
    ``burst`` is rejected and leaves no trace. With ``burst=0`` any arrival sooner than
    ``1 / rate`` after the last accepted one is rejected: the strictest common gateway.
    """

    def __init__(self, rate: float, burst: int = 0) -> None:
        self._rate = int(rate * 1000)  # requests per 1000 s, as nginx keeps it
        self._burst = burst * 1000
        self._excess = 0
        self._last: int | None = None

    def allow(self, now: float) -> bool:
        """Accept if the bucket has room for one more request at ``now``."""
        now_ms = int(now * 1000)
        if self._last is None:
            excess = 0
        else:
            elapsed = abs(now_ms - self._last)
            excess = max(0, self._excess - self._rate * elapsed // 1000 + 1000)
            if excess > self._burst:
                return False
        self._excess = excess
        self._last = now_ms
        return True


def make_limiter(mode: QpsMode, qps: float, count_rejected: bool, burst: int = 0) -> Limiter:
    """Build a fresh limiter for one key.

    The window modes allow ``floor(qps)`` requests per second (at least one);
    the token bucket uses ``qps`` exactly as its refill rate; ``gcra`` is nginx
    ``limit_req`` at ``qps`` with ``burst`` (it never counts rejected requests).
    """
    if mode == "gcra":
        return GcraLimiter(qps, burst)
    if mode == "token_bucket":
        return TokenBucketLimiter(qps, count_rejected)
    capacity = max(1, math.floor(qps))
    if mode == "fixed":
        return FixedWindowLimiter(capacity, count_rejected)
    return SlidingWindowLimiter(capacity, count_rejected)
