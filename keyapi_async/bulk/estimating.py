"""What a crawl would cost, computed without sending anything.

Pure functions behind ``keyapi-async estimate IDS_FILE`` and ``ranking ... --estimate``.
They count what the crawl itself does: a detail crawl drops repeated ids, skips ids done
by an earlier run (stored or recorded missing), and packs the rest 10 to a request; every
request costs one credit whatever it finds; the limiter spaces request starts
``1 / (qps * (1 - headroom))`` seconds apart. So on a run without failures, the credits
estimated are the credits the crawl spends (retries of failed requests come on top, each
reserved against ``max_credits`` like any attempt).
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable
from dataclasses import dataclass

from ..limiting.base import DEFAULT_HEADROOM
from ..pipeline.batching import MAX_IDS_PER_REQUEST
from ..pipeline.errors import InvalidParameterError
from .idset import CompactIdSet

__all__ = ["Estimate", "RankingEstimate", "estimate_details", "estimate_ranking"]


@dataclass(frozen=True)
class Estimate:
    """The cost of a detail crawl over an ids file."""

    #: Ids read, repeats included.
    ids: int
    #: Distinct ids.
    unique: int
    #: Distinct ids an earlier run already did (skipped on resume).
    done: int
    #: Requests the crawl sends: ceil((unique - done) / 10).
    requests: int
    #: Credits they cost (one a request).
    credits: int
    #: Seconds of request starts at the given qps (latency and retries not included).
    seconds: float

    @property
    def todo(self) -> int:
        """Distinct ids still to fetch."""
        return self.unique - self.done


@dataclass(frozen=True)
class RankingEstimate:
    """The cost of a ranking crawl of ``max_pages`` pages, at most."""

    pages: int
    done: int
    requests: int
    credits: int
    seconds: float


def _seconds(requests: int, qps: float, headroom: float) -> float:
    if isinstance(qps, bool) or not isinstance(qps, (int, float)) or not (
        math.isfinite(qps) and qps > 0
    ):
        raise InvalidParameterError(f"qps must be a positive number, got {qps!r}")
    if not 0 <= headroom < 1:
        raise InvalidParameterError(f"headroom must be in [0, 1), got {headroom!r}")
    # The first request starts at once, each next one an interval later.
    return max(0, requests - 1) / (qps * (1.0 - headroom))


def estimate_details(
    ids: Iterable[str],
    *,
    qps: float,
    done: Container[str] = frozenset(),
    headroom: float = DEFAULT_HEADROOM,
) -> Estimate:
    """Count a detail crawl of ``ids`` (valid id strings, e.g. an IdsFile) at ``qps``.

    ``done`` holds the ids a resumed crawl skips. Memory: about 8.5 bytes a distinct id.
    """
    seen = CompactIdSet()
    read = unique = already = 0
    for vid in ids:
        read += 1
        if seen.add(vid):
            unique += 1
            if vid in done:
                already += 1
    requests = math.ceil((unique - already) / MAX_IDS_PER_REQUEST)
    return Estimate(read, unique, already, requests, requests,
                    _seconds(requests, qps, headroom))


def estimate_ranking(
    max_pages: int, *, qps: float, pages_done: int = 0, headroom: float = DEFAULT_HEADROOM
) -> RankingEstimate:
    """Count a ranking crawl of ``max_pages`` pages, ``pages_done`` of them stored already.

    An upper bound: a list that ends sooner costs fewer pages.
    """
    for name, value in (("max_pages", max_pages), ("pages_done", pages_done)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidParameterError(f"{name} must be an int >= 0, got {value!r}")
    requests = max(0, max_pages - pages_done)
    return RankingEstimate(max_pages, min(pages_done, max_pages), requests, requests,
                           _seconds(requests, qps, headroom))
