"""The rate-limiting interface: what the client asks before every attempt.

:class:`RateLimiter` is the small protocol the client depends on; ``local`` holds the
in-process implementation (:class:`~keyapi_async.LocalRateLimiter`), ``redis`` one shared
across processes. Another implementation plugs in as ``KeyAPIClient(rate_limiter=...)``.
"""

from __future__ import annotations

import math
from typing import Final, Literal, Protocol, runtime_checkable

from .adaptive import DEFAULT_AUTO_CEILING, DEFAULT_START_QPS

__all__ = ["DEFAULT_HEADROOM", "QpsSetting", "RateLimiter", "check_qps"]

#: Fraction of the budget left unused by default, to absorb network jitter (see below).
DEFAULT_HEADROOM: Final = 0.02

#: A fixed budget in request starts per second, or ``"auto"`` to discover the key's limit.
QpsSetting = float | Literal["auto"]


@runtime_checkable
class RateLimiter(Protocol):
    """Decides when a request may start. Every attempt, retries included, asks first.

    The client also tells it about 429s without Retry-After through ``on_throttle``
    (optional: a limiter without it is still used, it just does not adapt).
    """

    @property
    def qps(self) -> float:
        """The current pacing rate: request starts per second."""
        ...

    async def acquire(self) -> None:
        """Wait until one request may start now, and count it as started."""
        ...

    async def penalize(self, seconds: float) -> None:
        """Start nothing for ``seconds`` from now (the server said Retry-After)."""
        ...

    async def on_throttle(self, started_at: float) -> None:
        """A request started at ``started_at`` (the event loop's clock) got a 429."""
        ...


def check_qps(qps: object, max_qps: object = None) -> tuple[float, float | None]:
    """Validate ``qps`` (a positive number or ``"auto"``) and ``max_qps``.

    Returns ``(ceiling, start)``: the highest rate, and where slow start begins (None for
    a fixed qps). Raises ValueError with a message naming the bad argument.
    """
    if max_qps is not None and not (
        isinstance(max_qps, (int, float)) and not isinstance(max_qps, bool)
        and math.isfinite(max_qps) and max_qps > 0
    ):
        raise ValueError(f"max_qps must be a positive number or None, got {max_qps!r}")
    if qps == "auto":
        ceiling = DEFAULT_AUTO_CEILING if max_qps is None else float(max_qps)
        return ceiling, min(DEFAULT_START_QPS, ceiling)
    if not (
        isinstance(qps, (int, float)) and not isinstance(qps, bool)
        and math.isfinite(qps) and qps > 0
    ):
        raise ValueError(f"qps must be a positive number or 'auto', got {qps!r}")
    if max_qps is not None:
        raise ValueError("max_qps is the ceiling of qps='auto'; with a fixed qps, qps is it")
    return float(qps), None
