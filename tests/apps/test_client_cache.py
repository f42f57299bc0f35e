"""The client's cache, against FakeKeyAPI: hits cost no request, negative entries, ranking
pages by their whole query, freshness on a virtual clock, iterators and crawls bypassing
it unless asked (RedisCache shared by two clients: tests/redis/test_redis_cache.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

RANKING = "/v1/tiktok/video/ranking/analytics"
RANK_ARGS: dict[str, Any] = {
    "date": "2025-01-06", "region": "US", "video_rank_field": 1, "rank_type": 2,
}


class Clock:
    """A virtual clock for MemoryCache: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def client(fake: FakeKeyAPI, **kwargs: Any) -> ka.KeyAPIClient:
    kwargs.setdefault("qps", 1000)
    return ka.KeyAPIClient("test-key", base_url=fake.url, **kwargs)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKeyAPI]:
    async with FakeKeyAPI(known_ratio=0.7) as server:
        yield server


@pytest.mark.parametrize("coalesce", [True, False])
async def test_hits_cost_no_request_and_unknown_ids_are_remembered(
    fake: FakeKeyAPI, coalesce: bool
) -> None:
    ids = fake.make_ids(25)
    unknown = [i for i in ids if not fake.is_known(i)]
    assert unknown
    events: list[ka.Event] = []
    async with client(
        fake, cache=ka.MemoryCache(), coalesce=coalesce, on_event=events.append
    ) as api:
        first = await api.video_details(ids)
        assert len(fake.requests) == 3
        again = await api.video_details(list(reversed(ids)))
        assert await api.video_detail(unknown[0]) is None
        assert len(fake.requests) == 3  # all from the cache, unknown ids included
        assert api.stats.cache_hits == 26
        # Each call alone would have sent ceil(ids / 10) requests; the cached ones sent none.
        assert api.stats.credits_saved == 3 + 1
        assert api.stats.credits_spent == 3
    assert [v.video_id for v in again] == [v.video_id for v in reversed(first)]
    hits = [e for e in events if isinstance(e, ka.CacheHit)]
    assert [(e.kind, e.hits) for e in hits] == [("detail", 25), ("detail", 1)]


async def test_a_partial_hit_sends_only_the_misses(fake: FakeKeyAPI) -> None:
    ids = fake.make_ids(12, known=True)
    async with client(fake, cache=ka.MemoryCache()) as api:
        await api.video_details(ids[:5])
        videos = await api.video_details(ids)
    assert [v.video_id for v in videos] == ids
    assert [r.params["video_ids"].split(",") for r in fake.requests] == [ids[:5], ids[5:]]


async def test_entries_are_served_while_fresh_only(fake: FakeKeyAPI) -> None:
    clock = Clock()
    [vid] = fake.make_ids(1, known=True)
    async with client(fake, cache=ka.MemoryCache(ttl=60, clock=clock)) as api:
        await api.video_detail(vid)
        clock.now = 59.9
        await api.video_detail(vid)
        assert len(fake.requests) == 1
        clock.now = 60.0  # expired: asked again
        await api.video_detail(vid)
        assert len(fake.requests) == 2


async def test_ranking_pages_are_cached_by_their_whole_query(fake: FakeKeyAPI) -> None:
    async with client(fake, cache=ka.MemoryCache()) as api:
        page = await api.video_ranking(**RANK_ARGS)
        assert await api.video_ranking(**RANK_ARGS) == page
        assert len(fake.requests) == 1
        await api.video_ranking(**RANK_ARGS, page_num=2)
        await api.video_ranking(**RANK_ARGS, page_size=5)
        await api.video_ranking(**RANK_ARGS, created_by_ai=False)
        assert len(fake.requests) == 4  # another page, size or filter: another query
        assert api.stats.cache_hits == 1 and api.stats.credits_saved == 1


async def test_iterators_bypass_the_cache(fake: FakeKeyAPI) -> None:
    ids = fake.make_ids(10)
    async with client(fake, cache=ka.MemoryCache()) as api:
        await api.video_details(ids)
        async for _ in api.iter_video_details(ids):
            pass
        await api.video_ranking(**RANK_ARGS)
        async for _ in api.iter_ranking_pages(**RANK_ARGS, max_pages=1):
            pass
        assert api.stats.cache_hits == 0
    assert len(fake.requests) == 4


async def test_a_crawl_uses_the_cache_only_when_asked(fake: FakeKeyAPI, tmp_path: Path) -> None:
    ids = fake.make_ids(45)
    async with client(fake, cache=ka.MemoryCache()) as api:
        await api.video_details(ids[:23])  # fills the cache: 3 requests
        plain = await ka.crawl_video_details(api, ids, ka.JsonlSink(tmp_path / "a.jsonl"))
        assert plain.credits_spent == 5 and len(fake.requests) == 8
        cached = await ka.crawl_video_details(
            api, ids, ka.JsonlSink(tmp_path / "b.jsonl"), use_cache=True
        )
    # Every id is now cached (the first crawl did not store, the lookups did): 23 served,
    # the 22 others repacked 10 a request.
    assert cached.credits_spent == 3 and len(fake.requests) == 11
    assert (cached.fetched, cached.missing) == (plain.fetched, plain.missing)
    assert cached.ok and cached.accounted == 45
    stored = {line for line in (tmp_path / "b.jsonl").read_text().splitlines()}
    assert len(stored) == plain.fetched


async def test_a_ranking_crawl_uses_the_cache_only_when_asked(
    fake: FakeKeyAPI, tmp_path: Path
) -> None:
    async with client(fake, cache=ka.MemoryCache()) as api:
        first = await ka.crawl_video_ranking(
            api, ka.JsonlSink(tmp_path / "a.jsonl"), **RANK_ARGS, max_pages=3, use_cache=True
        )
        second = await ka.crawl_video_ranking(
            api, ka.JsonlSink(tmp_path / "b.jsonl"), **RANK_ARGS, max_pages=3, use_cache=True
        )
    assert (first.credits_spent, second.credits_spent) == (3, 0)
    assert len(fake.requests) == 3
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


async def test_the_client_never_closes_a_cache_it_was_given(fake: FakeKeyAPI) -> None:
    class Tracking(ka.MemoryCache):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    cache = Tracking()
    async with client(fake, cache=cache) as api:
        assert api.cache is cache
    assert not cache.closed
    with pytest.raises(ka.ConfigurationError, match="Cache"):
        client(fake, cache={})

