"""A call's stop with a grace (the client option crawls pass through), and a fan-out that
yields finished batches while a slow id source waits.

Requests that hang are the fake's ``slow`` fault (600 s); a stop is set from the event
handler at the moment the last wanted request goes on the wire, so what is on the wire
when the stop comes is known without polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import FAST_RETRIES

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

KEY = "test-key"
RANK_ARGS: dict[str, Any] = {
    "date": "2026-11-16", "region": "US", "video_rank_field": 1, "rank_type": ka.RankType.WEEK,
}
HANG = 600.0  # the test would time out long before a hung request answered


def client_for(server: FakeKeyAPI, stop: asyncio.Event, starts: int, **kwargs: Any
               ) -> ka.KeyAPIClient:
    """A client that sets ``stop`` when its ``starts``-th attempt goes on the wire."""
    started: list[ka.Event] = []

    def on_event(event: ka.Event) -> None:
        if isinstance(event, ka.AttemptStarted):
            started.append(event)
            if len(started) == starts:
                stop.set()

    return ka.KeyAPIClient(
        KEY, base_url=server.url, qps=500, retry_policy=FAST_RETRIES, timeout=HANG * 2,
        on_event=on_event, **kwargs,
    )


async def test_detail_requests_on_the_wire_past_the_grace_are_given_up_and_counted() -> None:
    stop = asyncio.Event()
    async with FakeKeyAPI(faults=Faults(slow={2, 3}, slow_seconds=HANG)) as server:
        ids = server.make_ids(100)
        async with client_for(server, stop, 3, max_concurrency=3) as client:
            batches = [b async for b in client.iter_detail_batches(
                ids, stop=stop, stop_grace=0
            )]
            assert len(server.requests) == 3  # nothing started after the stop
            stats = client.stats
    # given up on the wire: the two hung requests (the quick one too, if it had not answered)
    on_wire = [b for b in batches if not b.sent and b.attempts == 1]
    assert len(on_wire) >= 2
    assert stats.cancelled_on_wire == len(on_wire)
    assert stats.credits_unknown == len(on_wire)  # possibly charged
    # batches pulled after the first answer never went out
    assert all(b.attempts == 0 for b in batches if not b.sent and b not in on_wire)
    flat = [i for b in batches for i in b.ids]
    assert sorted(flat) == sorted(ids[: len(flat)])  # every id pulled is accounted for


async def test_without_a_grace_a_stop_lets_requests_on_the_wire_finish() -> None:
    stop = asyncio.Event()
    async with FakeKeyAPI(latency=0.01) as server:
        ids = server.make_ids(100)
        async with client_for(server, stop, 3, max_concurrency=3) as client:
            batches = [b async for b in client.iter_detail_batches(ids, stop=stop)]
            assert client.stats.cancelled_on_wire == 0
    assert [b.sent for b in batches] == [True, True, True]
    assert len(server.requests) == 3


async def test_ranking_pages_on_the_wire_past_the_grace_end_the_list_before_them() -> None:
    stop = asyncio.Event()
    async with FakeKeyAPI(ranking_length=1000, faults=Faults(slow={2}, slow_seconds=HANG)
                          ) as server, client_for(server, stop, 2, max_concurrency=8) as client:
        pages = [p.page_num async for p in client.iter_ranking_pages(
            **RANK_ARGS, stop=stop, stop_grace=0
        )]
        assert client.stats.cancelled_on_wire >= 1
    assert len(server.requests) == 2
    assert pages in ([], [1])  # a contiguous prefix, without the hung page


async def test_crawl_stop_grace_is_the_clients() -> None:
    stop = asyncio.Event()

    class Memory:
        def __init__(self) -> None:
            self.records: list[Any] = []

        async def write(self, records: Any) -> None:
            self.records.extend(records)

        async def close(self) -> None:
            pass

    async with FakeKeyAPI(faults=Faults(slow={2, 3}, slow_seconds=HANG)) as server:
        ids = server.make_ids(100, known=True)
        async with client_for(server, stop, 3, max_concurrency=3) as client:
            report = await ka.crawl_video_details(
                client, ids, Memory(), stop=stop, stop_grace=0
            )
    assert report.aborted == "interrupted"
    assert report.in_flight >= 2
    assert report.accounted == report.requested == 100
    assert report.not_attempted >= 90  # the hung batches and the ids never sent


@pytest.mark.parametrize("grace", [-1, float("nan"), True, "1"])
async def test_a_bad_grace_is_refused_before_any_request(grace: object) -> None:
    async with FakeKeyAPI() as server, ka.KeyAPIClient(KEY, base_url=server.url) as client:
        with pytest.raises(ka.InvalidParameterError):
            client.iter_detail_batches(["1"], stop_grace=grace)  # type: ignore[arg-type]
        with pytest.raises(ka.InvalidParameterError):
            await anext(client.iter_ranking_pages(**RANK_ARGS, stop_grace=grace))  # type: ignore[arg-type]
        assert server.requests == []


async def test_a_finished_batch_is_yielded_while_a_slow_source_waits() -> None:
    events: list[str] = []
    more = asyncio.Event()
    async with FakeKeyAPI() as server:
        ids = server.make_ids(20, known=True)

        async def source() -> AsyncIterator[str]:
            for vid in ids[:10]:
                yield vid
            events.append("source waits")
            await more.wait()  # until the consumer has seen the first batch
            events.append("source resumes")
            for vid in ids[10:]:
                yield vid

        async def consume() -> list[ka.DetailBatch]:
            seen = []
            async with ka.KeyAPIClient(KEY, base_url=server.url, qps=500) as client:
                async for batch in client.iter_detail_batches(source()):
                    events.append(f"batch of {len(batch.ids)}")
                    seen.append(batch)
                    more.set()
            return seen

        # Before: the fan-out pulled the source before yielding, and waited here forever.
        batches = await asyncio.wait_for(consume(), timeout=60)
    assert events == ["source waits", "batch of 10", "source resumes", "batch of 10"]
    assert sorted(v.video_id for b in batches for v in b.videos) == sorted(ids)


# -- a source that waits, or breaks, while the call is stopped (review findings) -------


async def test_a_stop_without_grace_ends_a_wait_for_the_source_and_returns_what_it_took(
) -> None:
    """Ids 1-15 come, then the source waits for good: the stop set at the first batch ends
    the call (it used to wait for the source forever), and the 5 ids taken but never
    batched come back with ``sent=False``: every id taken is accounted for."""
    stop = asyncio.Event()
    async with FakeKeyAPI() as server:
        ids = server.make_ids(15)
        never = asyncio.Event()

        async def source() -> AsyncIterator[str]:
            for vid in ids:
                yield vid
            await never.wait()  # a queue with nothing new yet
            yield server.make_ids(1)[0]

        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=500) as client:
            batches = []

            async def consume() -> None:
                async for batch in client.iter_detail_batches(source(), stop=stop):
                    batches.append(batch)
                    stop.set()

            # A guard, not a timing assertion: the old fan-out waited here forever.
            await asyncio.wait_for(consume(), HANG)
    sent = [i for b in batches if b.sent for i in b.ids]
    given_back = [i for b in batches if not b.sent for i in b.ids]
    assert sent == ids[:10]
    assert given_back == ids[10:]
    assert len(server.requests) == 1


async def test_a_source_error_waits_for_the_paid_requests_on_the_wire() -> None:
    """The source raises after 25 ids: the two requests already started finish and are
    yielded (their credits are not thrown away), the 5 ids taken come back unsent, then
    the source's error is raised."""
    async with FakeKeyAPI(latency=0.05) as server:
        ids = server.make_ids(25)

        async def source() -> AsyncIterator[str]:
            for vid in ids:
                yield vid
            raise ValueError("the feed broke")

        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=500) as client:
            batches: list[ka.DetailBatch] = []
            with pytest.raises(ValueError, match="the feed broke"):
                async for batch in client.iter_detail_batches(source()):
                    batches.append(batch)
            stats = client.stats
    assert sorted(i for b in batches if b.sent for i in b.ids) == sorted(ids[:20])
    assert all(b.error is None for b in batches if b.sent)
    assert [i for b in batches if not b.sent for i in b.ids] == ids[20:]
    assert stats.cancelled_on_wire == 0
    assert len(server.requests) == 2


async def test_a_bad_id_mid_stream_keeps_the_batches_on_the_wire() -> None:
    """A bad id in a plain iterator (read inline) is the same: requests already started
    finish, the valid ids before it come back unsent, then the refusal is raised."""
    async with FakeKeyAPI(latency=0.05) as server:
        ids = server.make_ids(13)
        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=500) as client:
            batches: list[ka.DetailBatch] = []
            with pytest.raises(ka.InvalidParameterError):
                async for batch in client.iter_detail_batches(iter([*ids, "not-an-id"])):
                    batches.append(batch)
    assert [i for b in batches if b.sent for i in b.ids] == ids[:10]
    assert [i for b in batches if not b.sent for i in b.ids] == ids[10:]
