"""KeyAPIClient over real sockets against keyapi_async.testing.FakeKeyAPI."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from conftest import FAST_RETRIES

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

KEY = "test-key"
DETAIL = "/v1/tiktok/video/detail/analytics"
RANKING = "/v1/tiktok/video/ranking/analytics"
RANK_ARGS: dict[str, Any] = {
    "date": "2026-11-16",
    "region": "US",
    "video_rank_field": 1,
    "rank_type": ka.RankType.WEEK,
}


def client_for(server: FakeKeyAPI, **kwargs: Any) -> ka.KeyAPIClient:
    kwargs.setdefault("qps", 500)
    kwargs.setdefault("retry_policy", FAST_RETRIES)
    return ka.KeyAPIClient(KEY, base_url=server.url, **kwargs)


def sdk_tasks(tasks: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """The tasks running SDK code (the fake server's handler tasks share this loop)."""

    def is_sdk(task: asyncio.Task[Any]) -> bool:
        filename = getattr(task.get_coro(), "cr_code", None)
        path = filename.co_filename if filename else ""
        return "keyapi_async" in path and "testing" not in path

    return [t for t in tasks if is_sdk(t)]


def detail_batches(server: FakeKeyAPI) -> list[list[str]]:
    return [r.params["video_ids"].split(",") for r in server.requests if r.path == DETAIL]


async def test_a_client_at_the_servers_qps_gets_everything_and_counts_every_429() -> None:
    qps = 20
    async with FakeKeyAPI(
        qps=qps, qps_mode="sliding", count_rejected=True, latency=0.02, jitter=0.01
    ) as server:
        ids = server.make_ids(600)
        async with client_for(server, qps=qps) as client:
            videos = await client.video_details(ids)
        stats = server.stats()
    # Outcomes only. The pacing is proven on a virtual clock (tests/test_limiting.py) and
    # measured in benchmarks/; over real sockets a stall of a loaded machine can bunch two
    # arrivals into one window, and that 429 must cost time, never data or a credit.
    assert {v.video_id for v in videos} == {i for i in ids if server.is_known(i)}
    assert stats.by_status[200] == stats.credits_spent == 60  # each batch answered once
    assert client.stats.rate_limited == stats.by_status.get(429, 0)
    assert stats.requests == 60 + client.stats.rate_limited


async def test_batching_and_dedupe_as_seen_by_the_server() -> None:
    async with FakeKeyAPI() as server:
        ids = server.make_ids(95)
        async with client_for(server) as client:
            videos = await client.video_details(ids + ids[::3])
        batches = detail_batches(server)
    assert len(batches) == 10 and all(1 <= len(b) <= 10 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat)) == 95
    known = [i for i in ids if server.is_known(i)]
    assert [v.video_id for v in videos] == known  # input order, unknown ids skipped
    assert len(known) < 95  # the server does omit some


@pytest.mark.parametrize(
    "faults",
    [
        Faults(http_5xx={1, 2, 5}),
        Faults(body_429=0.3),
        Faults(body_500=0.3),
        Faults(html_502={1, 3}),
        Faults(reset={2, 4}),
        Faults(truncated={1, 6}),
        Faults(control_chars=0.5),
        Faults(real_arrays=1.0),
        Faults(fail_first=2),
    ],
    ids=lambda f: next(k for k, v in vars(f).items() if v not in (0, 0.0, None, 30.0, 500)),
)
async def test_retries_recover_every_record_under_each_fault(faults: Faults) -> None:
    async with FakeKeyAPI(faults=faults, seed=3) as server:
        ids = server.make_ids(60)
        async with client_for(server, max_retries=6) as client:
            videos = await client.video_details(ids)
            batches = detail_batches(server)
    expected = {i: server.detail_record(i) for i in ids if server.is_known(i)}
    assert {v.video_id for v in videos} == set(expected)
    for video in videos:
        # control_chars injects raw control characters into the text: they arrive intact.
        desc = "".join(ch for ch in video.video_desc or "" if ch >= " ")
        assert desc == expected[video.video_id]["video_desc"]
    assert len(batches) > 6 or faults.real_arrays or faults.control_chars  # faults were hit
    assert len(batches) <= 6 * 7  # never more than max_retries + 1 attempts per batch


async def test_real_arrays_and_control_characters_in_ranking_pages() -> None:
    async with FakeKeyAPI(
        faults=Faults(real_arrays=0.5, control_chars=0.5), ranking_length=30
    ) as server:
        async with client_for(server) as client:
            items = [x async for x in client.iter_video_ranking(**RANK_ARGS)]
        expected = server.ranking_records(
            date="2026-11-16", region="US", video_rank_field=1, rank_type=2
        )
    assert [i.video_id for i in items] == [r["video_id"] for r in expected]
    assert all(isinstance(i.video_products, list) for i in items)
    assert all(isinstance(p, str) for i in items for p in i.video_products or [])


async def test_quota_exhaustion_stops_a_multi_batch_call() -> None:
    async with FakeKeyAPI(api_keys={KEY: 3}) as server:
        ids = server.make_ids(100)
        async with client_for(server, max_concurrency=1) as client:
            with pytest.raises(ka.QuotaExceededError) as info:
                await client.video_details(ids)
        statuses = [r.status for r in server.requests]
    assert statuses == [200, 200, 200, 402]  # nothing after the 402
    assert info.value.status == 402 and info.value.request_id


async def test_revoked_key_stops_concurrent_batches_without_new_requests() -> None:
    async with FakeKeyAPI(faults=Faults(revoke_after=5), latency=0.01) as server:
        ids = server.make_ids(300)
        async with client_for(server, max_concurrency=4) as client:
            seen: list[ka.DetailBatch] = []
            with pytest.raises(ka.AuthenticationError):
                async for batch in client.iter_detail_batches(ids):
                    seen.append(batch)
        first_401 = next(n for n, r in enumerate(server.requests) if r.status == 401)
        after = server.requests[first_401 + 1 :]
    # Requests already on the wire may still arrive; never more than the in-flight cap.
    assert len(after) <= 3
    accounted = [i for b in seen for i in b.ids]
    assert len(accounted) == len(set(accounted))
    # Exactly the 5 answers the server charged came back as data (given-up batches are
    # yielded with sent=False and no error: they are not successes).
    assert sum(1 for b in seen if b.sent and b.error is None) == 5


async def test_pagination_ends_at_the_first_short_page_without_refetching() -> None:
    async with FakeKeyAPI(ranking_length=45, latency=0.005) as server:
        async with client_for(server) as client:
            items = [x async for x in client.iter_video_ranking(**RANK_ARGS)]
        pages = [int(r.params["page_num"]) for r in server.requests if r.path == RANKING]
        expected = server.ranking_records(
            date="2026-11-16", region="US", video_rank_field=1, rank_type=2
        )
    assert [i.video_id for i in items] == [r["video_id"] for r in expected]
    assert len(pages) == len(set(pages))  # no page twice
    assert set(range(1, 6)) <= set(pages)
    # Slow start: by page 5 the window is at most 2**4 wide, so waste is bounded by it.
    assert max(pages) <= 5 + 16


async def test_max_pages_is_exact_and_start_page_is_honoured() -> None:
    async with FakeKeyAPI(ranking_length=1000) as server:
        async with client_for(server) as client:
            items = [
                x
                async for x in client.iter_video_ranking(
                    **RANK_ARGS, page_size=7, start_page=3, max_pages=4
                )
            ]
        pages = sorted(int(r.params["page_num"]) for r in server.requests)
        expected = server.ranking_records(
            date="2026-11-16", region="US", video_rank_field=1, rank_type=2
        )
    assert pages == [3, 4, 5, 6]
    assert [i.video_id for i in items] == [r["video_id"] for r in expected[14:42]]


async def test_exact_multiple_of_page_size_stops_on_the_empty_page() -> None:
    async with FakeKeyAPI(ranking_length=20) as server:
        async with client_for(server, max_concurrency=1) as client:
            items = [x async for x in client.iter_video_ranking(**RANK_ARGS)]
        pages = [int(r.params["page_num"]) for r in server.requests]
    assert len(items) == 20
    assert pages == [1, 2, 3]


async def test_timeouts_are_retried_then_raised() -> None:
    async with FakeKeyAPI(faults=Faults(slow=1.0, slow_seconds=5)) as server:
        async with client_for(server, timeout=0.2, max_retries=1) as client:
            with pytest.raises(ka.APIConnectionError, match=r"no complete answer within 0\.2s"):
                await client.video_details(server.make_ids(3))
        assert len(server.requests) == 2


async def test_server_that_goes_away_is_a_connection_error_then_recovers() -> None:
    server = FakeKeyAPI()
    await server.start()
    try:
        async with client_for(server, max_retries=1) as client:
            ids = server.make_ids(5, known=True)
            assert len(await client.video_details(ids)) == 5
            await server.stop()
            with pytest.raises(ka.APIConnectionError):
                await client.video_details(ids)
            await server.start()
            assert len(await client.video_details(ids)) == 5
    finally:
        await server.stop()


async def test_cancelling_a_call_leaves_no_task_and_a_usable_client() -> None:
    async with (
        FakeKeyAPI(latency=5.0) as server,
        client_for(server, max_concurrency=4) as client,
    ):
        before = asyncio.all_tasks()
        call = asyncio.ensure_future(client.video_details(server.make_ids(80)))
        for _ in range(2000):  # poll an observable condition, bounded (~10 s)
            if len([r for r in server.requests if r.path == DETAIL]) >= 4:
                break
            await asyncio.sleep(0.005)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0)
        assert sdk_tasks(asyncio.all_tasks() - before) == []
        assert client._inflight.active == 0
        server.faults = Faults()
    async with FakeKeyAPI() as server2, client_for(server2) as client2:
        assert await client2.video_details(server2.make_ids(3, known=True))


async def test_client_stays_usable_after_a_cancelled_call() -> None:
    async with FakeKeyAPI() as server, client_for(server, max_concurrency=2) as client:
        ids = server.make_ids(40, known=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(client.video_details(ids), timeout=0)
        assert client._inflight.active == 0
        assert len(await client.video_details(ids)) == 40


class OnePermitLimiter:
    """Grants one permit, then blocks every later acquire until it is cancelled."""

    qps = 1000.0

    def __init__(self) -> None:
        self.granted = 0
        self.never = asyncio.Event()

    async def acquire(self) -> None:
        if self.granted:
            await self.never.wait()
        self.granted += 1

    async def penalize(self, seconds: float) -> None:
        pass


async def test_a_fatal_error_halts_batches_queued_behind_the_limiter_at_once() -> None:
    # Before a halt cancelled queued batches, they waited for their permit: forever here.
    async with FakeKeyAPI(api_keys={KEY: 0}) as server:
        limiter = OnePermitLimiter()
        async with client_for(server, rate_limiter=limiter, max_concurrency=20) as client:
            seen: list[ka.DetailBatch] = []

            async def consume() -> None:
                async for batch in client.iter_detail_batches(server.make_ids(200)):
                    seen.append(batch)

            with pytest.raises(ka.QuotaExceededError):
                await asyncio.wait_for(consume(), timeout=30)
    assert len(server.requests) == 1
    assert [b.sent for b in seen].count(True) == 1
    assert sum(len(b.ids) for b in seen) == 200  # every id pulled is accounted for


async def test_stop_ends_detail_batches_without_starting_new_requests() -> None:
    async with FakeKeyAPI(latency=0.02) as server:
        ids = server.make_ids(1000)
        stop = asyncio.Event()
        async with client_for(server, qps=200, max_concurrency=6) as client:
            seen: list[ka.DetailBatch] = []
            async for batch in client.iter_detail_batches(ids, stop=stop):
                seen.append(batch)
                if len(seen) == 3:
                    stop.set()
                    on_server = len(server.requests)
        sent = [b for b in seen if b.sent]
        assert len(server.requests) == sum(b.attempts for b in sent)
        assert len(server.requests) <= on_server + 6  # only what was on the wire
        flat = [i for b in seen for i in b.ids]
        assert len(flat) == len(set(flat)) and len(flat) < 1000
        assert flat == ids[: len(flat)] or sorted(flat) == sorted(ids[: len(flat)])


async def test_stop_ends_a_ranking_list_at_a_contiguous_prefix() -> None:
    async with FakeKeyAPI(ranking_length=1000, latency=0.01) as server:
        stop = asyncio.Event()
        async with client_for(server, max_concurrency=8) as client:
            pages = []
            async for page in client.iter_ranking_pages(**RANK_ARGS, stop=stop):
                pages.append(page.page_num)
                if len(pages) == 5:
                    stop.set()
        fetched = [int(r.params["page_num"]) for r in server.requests]
    assert pages == list(range(1, len(pages) + 1))
    assert len(fetched) == len(set(fetched)) and len(pages) < 100
    assert len(fetched) <= len(pages) + 8  # at most one window given up
