"""RedisCache against a real redis-server: round trips, expiry, sharing, outages, secrets."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio
from apps.records import details, ranking_page

import keyapi_async as ka
from keyapi_async.app.caching import DETAILS, RANKING_PAGES, Cache
from keyapi_async.app.redis_cache import RedisCache


@pytest.fixture
async def make_cache(redis_url: str) -> AsyncIterator[Callable[..., RedisCache]]:
    """``make_cache(**kw)``: a RedisCache on a fresh prefix unless one is given (closed after)."""
    made: list[RedisCache] = []
    prefix = f"test-cache-{uuid.uuid4().hex}:"

    def make(url: str = redis_url, **kwargs: object) -> RedisCache:
        kwargs.setdefault("prefix", prefix)
        cache = RedisCache(url, **kwargs)  # type: ignore[arg-type]
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()


async def test_records_negative_entries_and_pages_round_trip(
    make_cache: Callable[..., RedisCache],
) -> None:
    cache = make_cache()
    assert isinstance(cache, Cache)
    videos = details(20)
    stored = {v.video_id: v for v in videos if v.video_id}
    stored["7000000000000000001"] = None  # unknown to the API
    await cache.set_many(DETAILS, stored)
    keys = [*stored, "7000000000000000002"]
    assert await cache.get_many(DETAILS, keys) == stored  # the never-stored id: a miss
    page = ranking_page()
    assert any(v.product_category_list for v in page)  # the JSON-in-string fields survive
    await cache.set_many(RANKING_PAGES, {"q": page})
    assert await cache.get_many(RANKING_PAGES, ["q"]) == {"q": page}
    assert await cache.get_many(DETAILS, ["q"]) == {}  # kinds do not mix
    assert await cache.get_many(DETAILS, []) == {}
    await cache.set_many(DETAILS, {})


async def test_entries_expire_after_ttl_on_the_redis_clock(
    make_cache: Callable[..., RedisCache], redis_url: str
) -> None:
    cache = make_cache(ttl=90.5)
    await cache.set_many(DETAILS, {"a": None})
    raw = redis.asyncio.Redis.from_url(redis_url)
    try:
        key = f"{cache.prefix}detail:a"
        assert 89_000 < await raw.pttl(key) <= 90_500  # stored with exactly ttl to live
        await raw.pexpireat(key, 1)  # as if ttl had passed: Redis drops it
        assert await cache.get_many(DETAILS, ["a"]) == {}
    finally:
        await raw.aclose()


async def test_workers_share_entries(make_cache: Callable[..., RedisCache]) -> None:
    writer, reader = make_cache(), make_cache()
    [video] = details(1)
    assert video.video_id
    await writer.set_many(DETAILS, {video.video_id: video})
    assert await reader.get_many(DETAILS, [video.video_id]) == {video.video_id: video}
    other = make_cache(prefix=f"other-{uuid.uuid4().hex}:")  # another cache, same Redis
    assert await other.get_many(DETAILS, [video.video_id]) == {}


async def test_an_entry_that_does_not_decode_is_a_miss(
    make_cache: Callable[..., RedisCache], redis_url: str
) -> None:
    cache = make_cache()
    raw = redis.asyncio.Redis.from_url(redis_url)
    try:
        await raw.set(f"{cache.prefix}detail:x", b"\xc1 not msgpack")
    finally:
        await raw.aclose()
    assert await cache.get_many(DETAILS, ["x"]) == {}


async def test_redis_down_means_misses_and_skipped_stores_logged_once(
    make_cache: Callable[..., RedisCache],
    own_redis: tuple[str, subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, process = own_redis
    cache = make_cache(url, timeout=0.5)
    await cache.set_many(DETAILS, {"a": None})
    assert await cache.get_many(DETAILS, ["a"]) == {"a": None}
    process.terminate()
    process.wait(timeout=10)
    with caplog.at_level(logging.DEBUG, logger="keyapi_async"):
        assert await cache.get_many(DETAILS, ["a"]) == {}  # a miss, not an error
        await cache.set_many(DETAILS, {"b": None})  # skipped, not an error
        assert await cache.get_many(DETAILS, ["b"]) == {}
    assert cache.errors == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "carrying on without the cache" in warnings[0].getMessage()


async def test_the_redis_password_is_never_shown(
    make_cache: Callable[..., RedisCache], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pw-LEAKCANARY-91d2"
    host = redis_url.removeprefix("redis://")
    cache = make_cache(f"redis://nobody:{secret}@{host}")  # no such user here: AUTH fails
    with caplog.at_level(logging.DEBUG, logger="keyapi_async"):
        assert await cache.get_many(DETAILS, ["a"]) == {}
    assert cache.errors == 1
    assert secret not in repr(cache)
    assert secret not in caplog.text
    assert caplog.text  # the failure was reported


def test_bad_arguments_and_a_missing_extra_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ka.ConfigurationError, match="ttl"):
        RedisCache("redis://127.0.0.1:1/0", ttl=0)
    with pytest.raises(ka.ConfigurationError, match="timeout"):
        RedisCache("redis://127.0.0.1:1/0", timeout=-1)
    with pytest.raises(ka.ConfigurationError, match="invalid redis url"):
        RedisCache("http://127.0.0.1:1/0")
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ka.ConfigurationError, match=r"keyapi-async\[redis\]"):
        RedisCache("redis://127.0.0.1:1/0")


async def test_two_clients_share_it_the_second_sends_nothing(
    make_cache: Callable[..., RedisCache],
) -> None:
    from keyapi_async.testing import FakeKeyAPI

    cache = make_cache()
    async with FakeKeyAPI(known_ratio=0.7) as fake:
        ids = fake.make_ids(15)
        async with ka.KeyAPIClient("test-key", base_url=fake.url, qps=1000, cache=cache) as one:
            first = await one.video_details(ids)
        async with ka.KeyAPIClient("test-key", base_url=fake.url, qps=1000, cache=cache) as two:
            second = await asyncio.gather(*(two.video_detail(i) for i in ids))
            assert two.stats.cache_hits == 15  # records and unknown ids alike
        assert len(fake.requests) == 2
    assert [v.video_id for v in first] == [v.video_id for v in second if v is not None]
