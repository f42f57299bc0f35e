"""Coalescing through the real client, against FakeKeyAPI: shared requests (read off the
server's request log), own records in own order, errors to the right callers, cancellation,
a 401/402 halting every caller, and ``coalesce=False``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

DETAIL = "/v1/tiktok/video/detail/analytics"
NO_RETRIES = ka.RetryPolicy(max_retries=0)


def sent_batches(fake: FakeKeyAPI) -> list[list[str]]:
    """The ids of every detail request the server saw, in arrival order."""
    return [r.params["video_ids"].split(",") for r in fake.requests if r.path == DETAIL]


def client(fake: FakeKeyAPI, **kwargs: Any) -> ka.KeyAPIClient:
    kwargs.setdefault("qps", 1000)
    return ka.KeyAPIClient("test-key", base_url=fake.url, **kwargs)


async def wait_for_requests(fake: FakeKeyAPI, n: int) -> None:
    """Poll the server's log until ``n`` requests arrived (bounded): observable progress."""
    for _ in range(2000):
        if len(fake.requests) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the server saw {len(fake.requests)} requests, expected {n}")


@pytest.fixture
async def fake() -> AsyncIterator[FakeKeyAPI]:
    async with FakeKeyAPI(latency=0.01, known_ratio=0.8) as server:
        yield server


async def test_concurrent_callers_share_requests_and_get_their_own_records_in_order(
    fake: FakeKeyAPI,
) -> None:
    ids = fake.make_ids(40)
    # 30 callers, overlapping asks, repeats within an ask, unknown ids among them.
    asks = [[ids[(7 * n + k) % 40] for k in range(1 + n % 4)] + [ids[n % 40]] for n in range(30)]
    async with client(fake) as api:
        results = await asyncio.gather(*(api.video_details(ask) for ask in asks))
        singles = await asyncio.gather(*(api.video_detail(i) for i in ids[:5]))
    for ask, videos in zip(asks, results, strict=True):
        expected = [i for i in dict.fromkeys(ask) if fake.is_known(i)]
        assert [v.video_id for v in videos] == expected
    assert [v.video_id if v else None for v in singles] == [
        i if fake.is_known(i) else None for i in ids[:5]
    ]
    batches = sent_batches(fake)
    asked = {i for ask in asks for i in ask}
    # Each id of the gathered calls went out once, 10 a request: the floor.
    first = batches[: len(batches) - 1]
    sent = [i for batch in first for i in batch]
    assert sorted(sent) == sorted(asked) and len(first) == math.ceil(len(asked) / 10)
    assert all(len(b) <= 10 for b in batches)


async def test_one_id_asked_by_many_callers_is_requested_once(fake: FakeKeyAPI) -> None:
    [vid] = fake.make_ids(1, known=True)
    async with client(fake) as api:
        videos = await asyncio.gather(*(api.video_detail(vid) for _ in range(25)))
        assert api.stats.coalesced == 24
    assert {v.video_id for v in videos if v} == {vid} and len(videos) == 25
    assert sent_batches(fake) == [[vid]]


async def test_without_coalescing_each_call_sends_its_own_requests(fake: FakeKeyAPI) -> None:
    ids = fake.make_ids(6, known=True)
    async with client(fake, coalesce=False) as api:
        results = await asyncio.gather(*(api.video_details([i]) for i in ids))
    assert [[v.video_id for v in r] for r in results] == [[i] for i in ids]
    assert sorted(map(tuple, sent_batches(fake))) == sorted((i,) for i in ids)


async def test_a_failed_request_fails_only_the_callers_whose_ids_it_carried() -> None:
    # The server's first request fails (no retries): whichever batch that is.
    async with FakeKeyAPI(faults=Faults(http_5xx={1})) as fake:
        ids = fake.make_ids(20, known=True)
        async with client(fake, retry_policy=NO_RETRIES) as api:
            asks = [ids[0:4], ids[4:10], ids[10:14], ids[14:20], [ids[3], ids[12]]]
            results = await asyncio.gather(
                *(api.video_details(ask) for ask in asks), return_exceptions=True
            )
        failed = set(sent_batches(fake)[0])
    assert len(sent_batches(fake)) == 2
    for ask, result in zip(asks, results, strict=True):
        if failed & set(ask):
            assert isinstance(result, ka.ServerError)
        else:
            assert [v.video_id for v in result] == ask  # type: ignore[union-attr]
    assert sum(isinstance(r, ka.ServerError) for r in results) >= 2  # a batch had 2+ callers


async def test_cancelling_a_caller_never_cancels_another_callers_ids() -> None:
    async with FakeKeyAPI(latency=0.2) as fake:
        ids = fake.make_ids(3, known=True)
        async with client(fake) as api:
            leaving = asyncio.ensure_future(api.video_details(ids))
            staying = asyncio.ensure_future(api.video_details(ids[1:]))
            await wait_for_requests(fake, 1)
            leaving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leaving
            assert [v.video_id for v in await staying] == ids[1:]
    assert sent_batches(fake) == [ids]
    assert fake.requests[0].status == 200  # answered: the shared request was not cancelled


async def test_a_lookup_cancelled_before_its_batch_left_sends_nothing(fake: FakeKeyAPI) -> None:
    ids = fake.make_ids(3)
    async with client(fake, coalesce_window=3600) as api:
        call = asyncio.ensure_future(api.video_details(ids))
        await asyncio.sleep(0)  # the call queues its ids, then waits for the window
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert api._coalescer is not None and api._coalescer.queued == 0
    assert fake.requests == []


async def test_a_shared_request_nobody_waits_for_is_cancelled_unless_a_cache_keeps_it() -> None:
    async with FakeKeyAPI(latency=0.2) as fake:
        [vid] = fake.make_ids(1, known=True)
        async with client(fake) as api:
            call = asyncio.ensure_future(api.video_detail(vid))
            await wait_for_requests(fake, 1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # No cache: the request went with its only caller, as with coalesce=False.
            assert api._coalescer is not None and api._coalescer.in_flight == 0
            assert api._inflight.active == 0
        cache = ka.MemoryCache()
        async with client(fake, cache=cache) as api:
            call = asyncio.ensure_future(api.video_detail(vid))
            await wait_for_requests(fake, 2)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert api._coalescer is not None
            await api._coalescer.drain()  # on the wire, paid for: it finishes into the cache
            video = await api.video_detail(vid)
            assert video is not None and video.video_id == vid
            assert api.stats.cache_hits == 1
    assert len(fake.requests) == 2


@pytest.mark.parametrize("status", [401, 402])
async def test_a_401_or_402_halts_every_caller_and_later_calls_start_afresh(status: int) -> None:
    async with FakeKeyAPI(api_keys={"test-key": None}, latency=0.01) as fake:
        ids = fake.make_ids(60, known=True)
        if status == 401:
            fake.revoke_key("test-key")
        else:
            fake.set_credits("test-key", 0)
        error = ka.AuthenticationError if status == 401 else ka.QuotaExceededError
        # One request in flight at a time: the first answer halts everything queued.
        async with client(fake, max_concurrency=1) as api:
            results = await asyncio.gather(
                *(api.video_details(ids[n : n + 6]) for n in range(0, 60, 6)),
                return_exceptions=True,
            )
            assert all(isinstance(r, error) for r in results)
            assert len(fake.requests) == 1  # nothing queued was sent after the refusal
            if status == 402:  # topped up: the same client works again
                fake.set_credits("test-key", 10)
                video = await api.video_detail(ids[0])
                assert video is not None and video.video_id == ids[0]


async def test_closing_the_client_fails_waiting_lookups(fake: FakeKeyAPI) -> None:
    ids = fake.make_ids(2)
    api = client(fake, coalesce_window=3600)
    call = asyncio.ensure_future(api.video_details(ids))
    await asyncio.sleep(0)
    await api.aclose()
    with pytest.raises(ka.ConfigurationError, match="closed"):
        await call
    with pytest.raises(ka.ConfigurationError, match="closed"):
        await api.video_detail(ids[0])
    assert fake.requests == []


async def test_coalescing_options_are_checked(fake: FakeKeyAPI) -> None:
    for bad in ({"coalesce_window": -1}, {"coalesce_window": float("nan")}, {"coalesce": "yes"}):
        with pytest.raises(ka.ConfigurationError):
            client(fake, **bad)
    async with client(fake) as api:
        with pytest.raises(ka.InvalidParameterError):
            await api.video_detail("not-an-id")
        with pytest.raises(ka.InvalidParameterError):
            await api.video_details(["1", "x"])
    assert fake.requests == []
