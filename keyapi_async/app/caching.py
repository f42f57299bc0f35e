"""Caching answers while they are fresh: records by id, pages by their whole query.

KeyAPI's analytics are T+1: a video's figures change once a day, yet every request costs
a credit. A :class:`Cache` keeps what was paid for and serves it again while it is fresh.
Each entry lives in a :class:`CacheKind` (what it is, and the type it decodes to):

* :data:`DETAILS`: a :class:`~keyapi_async.VideoDetail` per video id, or ``None`` for an
  id the API did not know (a *negative entry*: asking again would spend a credit to learn
  the same thing);
* :data:`RANKING_PAGES`: a ranking page's items, keyed by :func:`query_key` of the whole
  query (path and every parameter, page number and size included);
* :data:`RAW_ANSWERS`: the untyped answers of ``KeyAPIClient.request``, keyed the same way.

:class:`MemoryCache` is in-process and bounded; ``RedisCache`` (module ``redis_cache``,
extra ``redis``) shares entries between processes and hosts, with the same interface.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlencode

from ..pipeline.decoding import RawResponse
from ..pipeline.errors import ConfigurationError
from ..pipeline.models import RankedVideo, VideoDetail

__all__ = [
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_TTL",
    "DETAILS",
    "RANKING_PAGES",
    "RAW_ANSWERS",
    "Cache",
    "CacheKind",
    "MemoryCache",
    "check_ttl",
    "query_key",
]

#: Seconds an entry stays fresh. The data changes once a day (T+1): an hour means a
#: record is served at most an hour behind the daily update, while a hot id costs at most
#: 24 credits a day instead of one per call.
DEFAULT_TTL: Final = 3600.0
#: Entries a MemoryCache holds by default: about 13 MB of video details (~1.3 KB each).
DEFAULT_MAX_ITEMS: Final = 10_000

T = TypeVar("T")


class CacheKind(Generic[T]):
    """A family of entries: a short ``name`` (part of the key) and the ``type`` of its values.

    The type is what a cache that stores bytes (Redis) decodes entries back into.
    """

    __slots__ = ("name", "type")

    def __init__(self, name: str, type: Any) -> None:
        self.name = name
        self.type = type

    def __repr__(self) -> str:
        return f"CacheKind({self.name!r})"


#: Video details by id; ``None`` marks an id the API did not know.
DETAILS: Final[CacheKind[VideoDetail]] = CacheKind("detail", VideoDetail)
#: Ranking pages' items by :func:`query_key`.
RANKING_PAGES: Final[CacheKind[list[RankedVideo]]] = CacheKind("ranking", list[RankedVideo])
#: Answers of other endpoints (``KeyAPIClient.request``) by :func:`query_key`.
RAW_ANSWERS: Final[CacheKind[RawResponse]] = CacheKind("raw", RawResponse)


def query_key(path: str, params: Mapping[str, str]) -> str:
    """The key of an answer: the path and every parameter, in a canonical (sorted) order."""
    return f"{path}?{urlencode(sorted(params.items()))}"


def check_ttl(ttl: object) -> float:
    """``ttl`` as positive finite seconds, or ConfigurationError."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not (
        math.isfinite(ttl) and ttl > 0
    ):
        raise ConfigurationError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return float(ttl)


@runtime_checkable
class Cache(Protocol):
    """Where the client keeps fresh answers. Entries are never served past ``ttl``."""

    @property
    def ttl(self) -> float:
        """Seconds an entry stays fresh after it is stored."""
        ...

    async def get_many(self, kind: CacheKind[T], keys: Sequence[str]) -> dict[str, T | None]:
        """The fresh entries among ``keys``: key -> value (``None``: a negative entry).

        Keys without a fresh entry are absent from the result.
        """
        ...

    async def set_many(self, kind: CacheKind[T], entries: Mapping[str, T | None]) -> None:
        """Store ``entries`` (``None`` values are negative entries), fresh for ``ttl``."""
        ...

    async def aclose(self) -> None:
        """Release what the cache holds open (connections); a no-op for memory."""
        ...


class MemoryCache:
    """An in-process cache: fresh-only, LRU-bounded.

    Guarantees: an entry stored at time ``t`` (on ``clock``) is served only while
    ``clock() < t + ttl``, never after; the cache never holds more than ``max_items``
    entries (all kinds together; a ranking page is one entry): storing one more evicts the
    least recently used (read or stored). Expired entries are dropped when met.
    Values are returned as stored, not copied: treat records as read-only.

    Args:
        ttl: Seconds an entry stays fresh (default :data:`DEFAULT_TTL`, one hour).
        max_items: Most entries held (default :data:`DEFAULT_MAX_ITEMS`).
        clock: Seconds, monotonic; tests pass a virtual one.
    """

    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        max_items: int = DEFAULT_MAX_ITEMS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = check_ttl(ttl)
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ConfigurationError(f"max_items must be an int >= 1, got {max_items!r}")
        self.max_items = max_items
        self._clock = clock
        # (kind, key) -> (expires at, value); order = recency of use, oldest first.
        self._entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()

    @property
    def ttl(self) -> float:
        """Seconds an entry stays fresh."""
        return self._ttl

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, kind: CacheKind[T], keys: Sequence[str]) -> dict[str, T | None]:
        """The fresh entries among ``keys`` (see :meth:`Cache.get_many`); marks them used."""
        now = self._clock()
        entries = self._entries
        found: dict[str, T | None] = {}
        for key in keys:
            slot = (kind.name, key)
            item = entries.get(slot)
            if item is None:
                continue
            if item[0] <= now:
                del entries[slot]
                continue
            entries.move_to_end(slot)
            found[key] = item[1]
        return found

    async def set_many(self, kind: CacheKind[T], entries: Mapping[str, T | None]) -> None:
        """Store ``entries`` fresh for ``ttl``, evicting the least recently used beyond
        ``max_items``."""
        expires = self._clock() + self._ttl
        stored = self._entries
        for key, value in entries.items():
            slot = (kind.name, key)
            stored[slot] = (expires, value)
            stored.move_to_end(slot)
        while len(stored) > self.max_items:
            stored.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return (
            f"MemoryCache(ttl={self._ttl:g}, max_items={self.max_items}, "
            f"entries={len(self._entries)})"
        )
