"""Statistics (busiest windows, concurrency) and the /_fake admin routes."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest

from keyapi_async.testing import FakeKeyAPI, Faults, RequestRecord
from keyapi_async.testing.stats import busiest_window, compute_stats

from .fake_api_helpers import Get


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([], 0),
        ([5.0], 1),
        ([0.0, 1.0, 2.0, 3.0], 1),  # exactly one second apart: never together
        ([0.0, 0.999, 1.998], 2),
        ([0.0, 0.1, 0.2, 1.15, 1.19, 1.21, 1.3], 4),  # (0.3, 1.3] holds the last four
        ([3.0, 0.5, 0.0, 0.2, 2.9], 3),  # unsorted input
        ([1.0] * 7, 7),
    ],
)
def test_busiest_window(times: list[float], expected: int) -> None:
    assert busiest_window(times) == expected


def test_busiest_window_matches_brute_force() -> None:
    rng = random.Random(3)
    for _ in range(50):
        times = sorted(rng.uniform(0, 5) for _ in range(rng.randint(1, 60)))
        brute = max(sum(1 for u in times if t - 1.0 < u <= t) for t in times)
        assert busiest_window(times) == brute


def test_compute_stats_splits_accepted_from_rejected() -> None:
    def record(time: float, status: int, code: int | None, credit: bool = False) -> RequestRecord:
        return RequestRecord(time, 0.0, "/p", {}, status, code, "k", credit, None)

    records = [
        record(0.0, 200, 0, True),
        record(0.1, 429, 429),
        record(0.2, 429, 429),
        record(0.5, 200, 0, True),
        record(1.4, 0, None),
    ]
    stats = compute_stats(records, max_concurrency=3)
    assert (stats.requests, stats.busiest_window, stats.busiest_accepted_window) == (5, 4, 2)
    assert stats.by_status == {200: 2, 429: 2, 0: 1}
    assert stats.by_code == {0: 2, 429: 2}
    assert (stats.credits_spent, stats.max_concurrency) == (2, 3)


async def test_max_concurrency(get: Get) -> None:
    async with FakeKeyAPI(latency=0.5) as server:
        await get(server, params={"video_ids": "1"})
        await get(server, params={"video_ids": "1"})
        assert server.stats().max_concurrency == 1  # one after the other
        server.reset_counters()
        await asyncio.gather(*(get(server, params={"video_ids": "1"}) for _ in range(6)))
        times = [r.time for r in server.requests]
        # All six arrived well within one latency of each other, so all overlapped.
        assert max(times) - min(times) < 0.5
        assert server.stats().max_concurrency == 6


async def test_stats_per_key(get: Get) -> None:
    async with FakeKeyAPI(["a", "b"]) as server:
        await get(server, params={"video_ids": "1"}, key="a")
        await get(server, params={"video_ids": "1"}, key="b")
        await get(server, params={}, key="b")
        assert server.stats(key="a").requests == 1
        b = server.stats(key="b")
        assert (b.requests, b.by_status, b.credits_spent) == (2, {200: 1, 400: 1}, 1)
        assert server.stats().requests == 3


async def test_admin_routes(session: aiohttp.ClientSession, get: Get) -> None:
    async with FakeKeyAPI(faults=Faults(body_500={2})) as server:
        for _ in range(3):
            await get(server, params={"video_ids": "1"})
        async with session.get(server.url + "/_fake/stats") as resp:
            stats = await resp.json()
        assert stats["requests"] == 3
        assert stats["by_status"] == {"200": 3}
        assert stats["by_code"] == {"0": 2, "500": 1}
        assert stats["faults_injected"] == {"body_500": 1}
        assert stats["credits_spent"] == 2
        async with session.get(server.url + "/_fake/stats", params={"key": "x"}) as resp:
            assert (await resp.json())["requests"] == 0
        async with session.get(server.url + "/_fake/requests") as resp:
            log = await resp.json()
        assert [r["code"] for r in log] == [0, 500, 0]
        assert log[0]["params"] == {"video_ids": "1"} and log[0]["key"] == "test-key"
        assert server.stats().requests == 3  # admin calls are not API requests
        async with session.post(server.url + "/_fake/reset") as resp:
            assert resp.status == 200
        assert server.requests == [] and server.stats().requests == 0
        # Request numbering restarted, so the schedule fires again on the second request.
        await get(server, params={"video_ids": "1"})
        assert (await get(server, params={"video_ids": "1"})).json()["code"] == 500
