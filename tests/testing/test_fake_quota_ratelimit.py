"""Credit quotas (402) and the four per-key QPS modes (429)."""

from __future__ import annotations

import asyncio
import itertools
import math

import aiohttp
import pytest

from keyapi_async.testing import FakeKeyAPI, Faults
from keyapi_async.testing.ratelimit import (
    FixedWindowLimiter,
    GcraLimiter,
    SlidingWindowLimiter,
    TokenBucketLimiter,
)

from .fake_api_helpers import Get, Reply

IDS = {"video_ids": "7000000000000000001"}


async def test_quota_runs_out_with_402(get: Get) -> None:
    async with FakeKeyAPI({"k": 2}) as server:
        statuses = [(await get(server, params=IDS, key="k")).status for _ in range(2)]
        assert statuses == [200, 200]
        assert server.credits("k") == 0
        reply = await get(server, params=IDS, key="k")
        assert reply.status == 402
        body = reply.json()
        assert (body["code"], body["data"], body["message"]) == (
            402,
            None,
            "apiKey quota is not enough",
        )
        # Bad parameters are reported before the quota.
        assert (await get(server, params={}, key="k")).status == 400
        server.set_credits("k", 1)
        assert (await get(server, params=IDS, key="k")).status == 200
        assert server.stats().credits_spent == 3
        assert server.stats().by_status == {200: 3, 402: 1, 400: 1}


async def test_set_credits_adds_a_key(get: Get) -> None:
    async with FakeKeyAPI({"k": None}) as server:
        assert (await get(server, params=IDS, key="new")).status == 401
        server.set_credits("new", None)
        assert (await get(server, params=IDS, key="new")).status == 200
        assert server.credits("new") is None


async def test_non_zero_answers_cost_nothing(get: Get) -> None:
    # aiohttp retries a GET once by itself after a reset, hence two resets.
    faults = Faults(http_5xx={2}, body_429={3}, body_500={4}, html_502={5}, reset={6, 7})
    async with FakeKeyAPI({"k": 10}, faults=faults) as server:
        await get(server, params={}, key="k")  # 400
        for _ in range(4):
            await get(server, params=IDS, key="k")
        with pytest.raises(aiohttp.ClientError):  # the reset
            await get(server, params=IDS, key="k")
        await get(server, params=IDS, key="k")  # 8th: a real success
        assert server.credits("k") == 9
        assert [r.credit for r in server.requests] == [False] * 7 + [True]


async def burst(get: Get, server: FakeKeyAPI, n: int, key: str = "test-key") -> list[Reply]:
    return await asyncio.gather(*(get(server, params=IDS, key=key) for _ in range(n)))


async def test_sliding_burst_lets_exactly_qps_through(get: Get) -> None:
    async with FakeKeyAPI(qps=5) as server:
        replies = await burst(get, server, 20)
        statuses = [r.status for r in replies]
        times = [r.time for r in server.requests]
        assert statuses.count(200) + statuses.count(429) == 20
        assert statuses.count(200) >= 5  # a fresh window always admits the first five
        assert server.stats().busiest_accepted_window <= 5  # never more than qps per second
        if max(times) - min(times) < 1.0:  # the whole burst fit in one window
            assert statuses.count(200) == 5
        rejected = next(r for r in replies if r.status == 429)
        body = rejected.json()
        assert (body["code"], body["data"], body["message"]) == (429, None, "qps limit exceeded")
        assert "Retry-After" not in rejected.headers
        assert server.stats().credits_spent == statuses.count(200)


async def test_limits_are_per_key(get: Get) -> None:
    async with FakeKeyAPI(["a", "b"], qps=3) as server:
        a, b = await asyncio.gather(burst(get, server, 6, "a"), burst(get, server, 6, "b"))
        assert server.stats(key="a").busiest_accepted_window <= 3
        assert server.stats(key="b").busiest_accepted_window <= 3
        assert [r.status for r in a].count(200) >= 3 and [r.status for r in b].count(200) >= 3


async def test_fixed_window_counts_per_clock_second(get: Get) -> None:
    async with FakeKeyAPI(qps=4, qps_mode="fixed") as server:
        await burst(get, server, 16)
        accepted_by_second: dict[int, int] = {}
        for record in server.requests:
            if record.status == 200:
                second = math.floor(record.time)
                accepted_by_second[second] = accepted_by_second.get(second, 0) + 1
        assert max(accepted_by_second.values()) == 4  # the first bucket fills up
        seconds = {math.floor(r.time) for r in server.requests}
        assert sum(accepted_by_second.values()) <= 4 * len(seconds)


async def test_token_bucket_burst_is_capacity_plus_refill(get: Get) -> None:
    async with FakeKeyAPI(qps=5, qps_mode="token_bucket") as server:
        replies = await burst(get, server, 20)
        accepted = [r.status for r in replies].count(200)
        times = [r.time for r in server.requests]
        assert 5 <= accepted <= 5 + math.floor(5 * (max(times) - min(times)))


async def test_retry_after_header(get: Get) -> None:
    async with FakeKeyAPI(qps=1, retry_after=2) as server:
        replies = await burst(get, server, 3)
        rejected = [r for r in replies if r.status == 429]
        assert rejected and all(r.headers["Retry-After"] == "2" for r in rejected)
        assert all("Retry-After" not in r.headers for r in replies if r.status == 200)


async def test_qps_is_checked_before_params(get: Get) -> None:
    async with FakeKeyAPI(qps=1) as server:
        replies = await asyncio.gather(*(get(server, params={}) for _ in range(3)))
        statuses = sorted(r.status for r in replies)
        assert statuses[0] == 400 and 429 in statuses


# The limiters themselves, on a synthetic clock: exact counts, no real time.


def test_sliding_window_edges() -> None:
    limiter = SlidingWindowLimiter(2, count_rejected=False)
    assert [limiter.allow(t) for t in (0.0, 0.5, 0.9, 0.999)] == [True, True, False, False]
    assert limiter.allow(1.0)  # 0.0 has left the window (0.0, 1.0]
    assert not limiter.allow(1.4)  # 0.5 and 1.0 are still in
    assert limiter.allow(1.5)


def test_sliding_window_counting_rejected_requests() -> None:
    limiter = SlidingWindowLimiter(2, count_rejected=True)
    assert [limiter.allow(t) for t in (0.0, 0.1, 0.5, 0.9)] == [True, True, False, False]
    # Without counting rejections 1.05 would pass (0.0 gone, 0.1 still in);
    # with them, 0.5 and 0.9 keep the window full.
    assert not limiter.allow(1.05)
    assert not limiter.allow(1.45)
    assert limiter.allow(2.5)


def test_fixed_window_allows_double_across_a_boundary() -> None:
    limiter = FixedWindowLimiter(3, count_rejected=False)
    times = (0.7, 0.8, 0.9, 0.95, 1.0, 1.1, 1.2, 1.3)
    assert [limiter.allow(t) for t in times] == [True, True, True, False, True, True, True, False]
    counting = FixedWindowLimiter(1, count_rejected=True)
    assert [counting.allow(t) for t in (0.1, 0.2, 1.1)] == [True, False, True]


def test_token_bucket_refills() -> None:
    bucket = TokenBucketLimiter(2.0, count_rejected=False)
    assert [bucket.allow(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.allow(0.5)  # one token refilled
    assert not bucket.allow(0.6)
    assert [bucket.allow(10.0) for _ in range(3)] == [True, True, False]  # capped at capacity
    draining = TokenBucketLimiter(2.0, count_rejected=True)
    assert [draining.allow(0.0) for _ in range(3)] == [True, True, False]
    assert not draining.allow(0.4)  # 0.8 token refilled, then drained by this rejection
    assert not draining.allow(0.8)


def test_gcra_without_burst_needs_one_over_rate_since_the_last_accepted() -> None:
    limiter = GcraLimiter(50, burst=0)  # nginx: rate=50r/s, one per 20 ms
    assert limiter.allow(10.000)
    assert not limiter.allow(10.019)  # 19 ms: too soon
    assert not limiter.allow(10.0199)  # whole milliseconds: still 19
    assert limiter.allow(10.020)  # 20 ms after the last *accepted* one
    # Rejected requests leave no trace: after 10.020, 10.030 is refused, 10.040 is not.
    assert [limiter.allow(t) for t in (10.030, 10.039, 10.040)] == [False, False, True]
    # A long idle spell earns no burst: still one per 20 ms afterwards.
    assert [limiter.allow(t) for t in (20.0, 20.001, 20.019, 20.020)] == [
        True, False, False, True,
    ]


def test_gcra_truncates_times_to_milliseconds_as_nginx_does() -> None:
    limiter = GcraLimiter(50)
    assert limiter.allow(1.0009)  # counted as 1000 ms
    assert limiter.allow(1.0200)  # 19.1 ms later, but 20 whole milliseconds: accepted
    assert not limiter.allow(1.0399)  # 19.9 ms later, 19 whole ones: refused


def test_gcra_burst_admits_that_many_ahead_of_the_rate() -> None:
    limiter = GcraLimiter(10, burst=3)  # one per 100 ms, up to 3 ahead
    assert [limiter.allow(5.0) for _ in range(5)] == [True, True, True, True, False]
    assert not limiter.allow(5.099)  # the bucket is full: 3 excess
    assert limiter.allow(5.100)  # one has drained
    assert [limiter.allow(6.0) for _ in range(5)] == [True, True, True, True, False]


async def test_gcra_mode_with_arrival_jitter(get: Get) -> None:
    async with FakeKeyAPI(qps=20, qps_mode="gcra", arrival_jitter=0.004) as server:
        replies = await burst(get, server, 10)
        accepted = [r.time for r in server.requests if r.status == 200]
    assert [r.status for r in replies].count(200) == len(accepted) >= 1
    # Accepted arrivals are 50 ms apart at least (in whole milliseconds, hence the 1 ms).
    assert all(b - a > 0.05 - 0.001 for a, b in itertools.pairwise(accepted))


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        FakeKeyAPI(qps=0)
    with pytest.raises(ValueError, match="burst"):
        FakeKeyAPI(qps=1, qps_mode="gcra", burst=-1)
    with pytest.raises(ValueError, match="arrival_jitter"):
        FakeKeyAPI(arrival_jitter=-0.1)
    with pytest.raises(ValueError):
        FakeKeyAPI(qps=1, qps_mode="leaky")  # type: ignore[arg-type]
