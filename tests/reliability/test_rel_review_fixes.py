"""Defects a hostile review of round two found, each pinned by a test.

* a ranking crawl stopped mid-list cancelled the pages already on the wire (paid, lost,
  fetched again by the resume);
* a stop or a fatal error cancelled a batch whose paid answer was being stored in a cache;
* a key holding ``"`` or ``\\`` survived the redaction of a JSON echo of it;
* a proxy password holding an unencoded ``/`` showed in messages;
* a crawl ended by a custom sink's own error left ids unaccounted for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

import pytest

import keyapi_async as ka
from keyapi_async.app.caching import CacheKind, MemoryCache
from keyapi_async.testing import FakeKeyAPI

KEY = "test-key"
RANKING = "/v1/tiktok/video/ranking/analytics"
RANK_ARGS: dict[str, Any] = {
    "date": "2026-11-16", "region": "US", "video_rank_field": 1, "rank_type": 2,
}
T = TypeVar("T")

pytestmark = pytest.mark.reliability


async def test_a_stopped_ranking_crawl_stores_every_page_it_paid_for() -> None:
    stop = asyncio.Event()

    def on_progress(report: ka.CrawlReport) -> None:
        if report.pages >= 3:
            stop.set()  # several pages are on the wire by now (slow start has widened)

    async with FakeKeyAPI(latency=0.05, ranking_length=1000) as server:
        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=200) as client:
            report = await ka.crawl_video_ranking(
                client, _MemorySink(), **RANK_ARGS, stop=stop, stop_grace=30,
                on_progress=on_progress,
            )
        charged = [r for r in server.requests if r.path == RANKING and r.credit]
    assert report.aborted == "interrupted"
    # Every answer the server charged was stored: none cancelled on the wire after the stop.
    assert report.pages == len(charged) > 3


class _MemorySink:
    def __init__(self) -> None:
        self.records: list[Any] = []

    async def write(self, records: Sequence[Any]) -> None:
        self.records.extend(records)

    async def close(self) -> None:
        pass


class _GatedCache(MemoryCache):
    """A cache whose first store waits for the test: a slow store (Redis, say) in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.storing = asyncio.Event()
        self.gate = asyncio.Event()

    async def set_many(self, kind: CacheKind[T], entries: Mapping[str, T | None]) -> None:
        if not self.storing.is_set():
            self.storing.set()
            await self.gate.wait()
        await super().set_many(kind, entries)


async def test_a_stop_never_cancels_an_answered_batch_being_stored_in_the_cache() -> None:
    cache = _GatedCache()
    stop = asyncio.Event()
    async with FakeKeyAPI() as server:
        ids = server.make_ids(30, known=True)
        async with ka.KeyAPIClient(
            KEY, base_url=server.url, qps=100, max_concurrency=1, cache=cache
        ) as client:
            batches = client.iter_detail_batches(ids, stop=stop, use_cache=True)
            async with aclosing(batches):
                consume = asyncio.ensure_future(_collect(batches))
                await cache.storing.wait()  # the first answer is in, its store is pending
                stop.set()
                cache.gate.set()
                seen = await consume
        charged = sum(1 for r in server.requests if r.credit)
    answered = [b for b in seen if b.sent]
    assert charged == len(answered) >= 1
    # The batch whose answer was being stored came through with its records, not given up.
    assert all(b.error is None and len(b.videos) == len(b.ids) for b in answered)
    assert {i for b in seen for i in b.ids} <= set(ids)


async def _collect(batches: Any) -> list[ka.DetailBatch]:
    return [b async for b in batches]


@pytest.mark.parametrize("key", ['sk-ab"cd', "sk-ab\\cd"])
def test_a_key_with_a_quote_or_backslash_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ka.ConfigurationError) as caught:
        ka.KeyAPIClient(key, base_url="http://127.0.0.1:9")
    assert "sk-ab" not in str(caught.value)


def test_a_proxy_password_with_a_slash_never_shows() -> None:
    proxy = "http://user:pa/ss@proxy.invalid:3128"
    try:
        client = ka.KeyAPIClient(KEY, base_url="https://api.keyapi.ai", proxy=proxy)
    except ka.KeyAPIError as exc:
        texts = [str(exc), repr(exc)]
    else:
        texts = [repr(client), str(client.proxy)]
    assert all("pa/ss" not in text for text in texts)


class _BrokenSink(_MemorySink):
    async def write(self, records: Sequence[Any]) -> None:
        if self.records:
            raise RuntimeError("the database went away")
        await super().write(records)


async def test_a_crawl_ended_by_its_sink_accounts_for_every_id() -> None:
    async with FakeKeyAPI() as server:
        ids = server.make_ids(200)
        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=100) as client:
            with pytest.raises(RuntimeError) as caught:
                await ka.crawl_video_details(client, ids, _BrokenSink())
    report = caught.value.report  # type: ignore[attr-defined]
    assert report.aborted == "aborted by RuntimeError"
    assert report.accounted == report.requested
    assert report.fetched + report.missing >= 1
