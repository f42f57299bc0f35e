"""MemoryCache: fresh-only on a virtual clock, LRU bounds, negative entries, query keys."""

from __future__ import annotations

import asyncio

import pytest
from virtual_clock import run_virtual

import keyapi_async as ka
from keyapi_async.app.caching import (
    DEFAULT_TTL,
    DETAILS,
    RANKING_PAGES,
    Cache,
    CacheKind,
    MemoryCache,
    query_key,
)

from .records import details, ranking_page


def test_entries_are_fresh_for_exactly_ttl_on_the_clock() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cache = MemoryCache(ttl=60, clock=loop.time)
        [video] = details(1)
        assert video.video_id is not None
        await cache.set_many(DETAILS, {video.video_id: video})
        await asyncio.sleep(59.999)  # virtual time
        assert await cache.get_many(DETAILS, [video.video_id]) == {video.video_id: video}
        await asyncio.sleep(0.001)  # now exactly ttl after storing: stale
        assert await cache.get_many(DETAILS, [video.video_id]) == {}
        assert len(cache) == 0  # the expired entry was dropped when met

    run_virtual(scenario())


def test_storing_again_restarts_freshness_reading_does_not() -> None:
    now = [0.0]
    cache = MemoryCache(ttl=10, clock=lambda: now[0])

    async def scenario() -> None:
        await cache.set_many(DETAILS, {"a": None, "b": None})
        now[0] = 8.0
        assert await cache.get_many(DETAILS, ["a"]) == {"a": None}  # a read: no extension
        await cache.set_many(DETAILS, {"b": None})  # a store: fresh from 8
        now[0] = 12.0
        assert await cache.get_many(DETAILS, ["a", "b"]) == {"b": None}

    asyncio.run(scenario())


def test_negative_entries_are_hits_distinct_from_misses() -> None:
    async def scenario() -> None:
        cache = MemoryCache()
        [video] = details(1)
        assert video.video_id is not None
        await cache.set_many(DETAILS, {video.video_id: video, "7000000000000000001": None})
        got = await cache.get_many(
            DETAILS, [video.video_id, "7000000000000000001", "7000000000000000002"]
        )
        # Known: the record; unknown to the API: None; never asked: absent.
        assert got == {video.video_id: video, "7000000000000000001": None}

    asyncio.run(scenario())


def test_lru_bound_evicts_the_least_recently_used() -> None:
    async def scenario() -> None:
        cache = MemoryCache(max_items=3)
        await cache.set_many(DETAILS, {"a": None, "b": None, "c": None})
        await cache.get_many(DETAILS, ["a"])  # a is now the most recently used
        await cache.set_many(DETAILS, {"d": None})
        assert len(cache) == 3
        assert set(await cache.get_many(DETAILS, ["a", "b", "c", "d"])) == {"a", "c", "d"}
        # One store larger than the bound keeps its last max_items entries.
        await cache.set_many(DETAILS, {str(n): None for n in range(10)})
        assert set(await cache.get_many(DETAILS, [str(n) for n in range(10)])) == {"7", "8", "9"}

    asyncio.run(scenario())


def test_kinds_are_separate_key_spaces() -> None:
    async def scenario() -> None:
        cache = MemoryCache()
        page = ranking_page()
        await cache.set_many(RANKING_PAGES, {"same": page})
        assert await cache.get_many(DETAILS, ["same"]) == {}
        assert await cache.get_many(RANKING_PAGES, ["same"]) == {"same": page}

    asyncio.run(scenario())


def test_query_key_is_the_whole_query_in_a_canonical_order() -> None:
    path = "/v1/tiktok/video/ranking/analytics"
    a = query_key(path, {"date": "2025-01-06", "region": "US", "page_num": "1"})
    b = query_key(path, {"page_num": "1", "region": "US", "date": "2025-01-06"})
    assert a == b
    assert a != query_key(path, {"date": "2025-01-06", "region": "US", "page_num": "2"})
    assert a != query_key(path, {"date": "2025-01-06", "region": "GB", "page_num": "1"})
    assert a != query_key("/other", {"date": "2025-01-06", "region": "US", "page_num": "1"})
    # A value containing the separators cannot collide with another split of the params.
    assert query_key(path, {"a": "1&b=2"}) != query_key(path, {"a": "1", "b": "2"})


def test_memory_cache_is_a_cache_and_its_defaults_fit_t_plus_1_data() -> None:
    cache = MemoryCache()
    assert isinstance(cache, Cache)
    assert cache.ttl == DEFAULT_TTL == 3600.0  # at most an hour behind a daily update
    assert "MemoryCache(ttl=3600" in repr(cache)
    assert repr(CacheKind("x", int)) == "CacheKind('x')"


@pytest.mark.parametrize(
    "kwargs",
    [{"ttl": 0}, {"ttl": -5}, {"ttl": float("inf")}, {"ttl": "60"}, {"ttl": True},
     {"max_items": 0}, {"max_items": 2.5}],
)
def test_bad_arguments_are_configuration_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ka.ConfigurationError):
        MemoryCache(**kwargs)  # type: ignore[arg-type]
