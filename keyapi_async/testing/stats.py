"""Request log entries and the statistics derived from them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Width in seconds of the window used by the QPS limit and ``busiest_window``.
WINDOW_SECONDS = 1.0


@dataclass(slots=True)
class RequestRecord:
    """One request to an API endpoint, as the fake server saw and answered it.

    ``status`` is the HTTP status decided for the request (set as soon as the
    decision is made, before any latency), or 0 when no HTTP answer was sent:
    a ``reset`` fault, or a client that went away before the delayed answer.
    ``code`` is the ``code`` field of the JSON body, ``None`` when there is no
    JSON body (``reset``, ``html_502``).  For damaged answers (``truncated``,
    ``control_chars``, ``real_arrays``, ``slow``) it is the code the body
    carried before the damage, i.e. 0.
    """

    time: float
    wall_time: float
    path: str
    params: dict[str, str]
    status: int = 0
    code: int | None = None
    key: str | None = None
    credit: bool = False
    fault: str | None = None


@dataclass(slots=True)
class ServerStats:
    """Aggregate view of the request log (see ``FakeKeyAPI.stats``).

    ``busiest_window`` is the largest number of request arrivals (any status)
    inside any sliding window of one second; ``busiest_accepted_window`` is the
    same, counting only requests that were not answered with HTTP 429.
    """

    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_code: dict[int, int] = field(default_factory=dict)
    credits_spent: int = 0
    busiest_window: int = 0
    busiest_accepted_window: int = 0
    max_concurrency: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)


def busiest_window(times: Iterable[float], width: float = WINDOW_SECONDS) -> int:
    """Return the most timestamps that fall in any half-open window ``(t - width, t]``.

    Two timestamps exactly ``width`` apart are never in the same window, which
    is the same rule the sliding QPS limiter applies, so a perfectly limited
    stream yields at most ``qps`` here.
    """
    ordered: Sequence[float] = sorted(times)
    best = 0
    left = 0
    for right, now in enumerate(ordered):
        # Same comparison as SlidingWindowLimiter so both agree at the edges.
        while now - ordered[left] >= width:
            left += 1
        best = max(best, right - left + 1)
    return best


def compute_stats(records: Sequence[RequestRecord], max_concurrency: int) -> ServerStats:
    """Summarise ``records``; concurrency is tracked live by the server, not derivable here."""
    by_status: Counter[int] = Counter()
    by_code: Counter[int] = Counter()
    faults: Counter[str] = Counter()
    credits = 0
    for record in records:
        by_status[record.status] += 1
        if record.code is not None:
            by_code[record.code] += 1
        if record.fault is not None:
            faults[record.fault] += 1
        credits += record.credit
    return ServerStats(
        requests=len(records),
        by_status=dict(by_status),
        by_code=dict(by_code),
        credits_spent=credits,
        busiest_window=busiest_window(r.time for r in records),
        busiest_accepted_window=busiest_window(r.time for r in records if r.status != 429),
        max_concurrency=max_concurrency,
        faults_injected=dict(faults),
    )
