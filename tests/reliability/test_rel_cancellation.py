"""Cancellation at many seeded points: no leaked task, no unclosed session, a usable client."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FAST_RETRIES

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("error")]

RANK_ARGS: dict[str, Any] = {
    "date": "2026-11-16",
    "region": "US",
    "video_rank_field": 1,
    "rank_type": 2,
}


def sdk_tasks() -> list[asyncio.Task[Any]]:
    def is_sdk(task: asyncio.Task[Any]) -> bool:
        code = getattr(task.get_coro(), "cr_code", None) or getattr(
            task.get_coro(), "ag_code", None
        )
        path = code.co_filename if code else ""
        return "keyapi_async" in path and "testing" not in path

    return [t for t in asyncio.all_tasks() if is_sdk(t)]


@contextlib.contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Collect what asyncio reports through the loop's exception handler (where 'Task was
    destroyed but it is pending' and aiohttp's 'Unclosed client session' end up)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


async def _wait_for_requests(server: FakeKeyAPI, n: int) -> None:
    for _ in range(2000):  # bounded: ~10 s of polling at most
        if len(server.requests) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"server saw {len(server.requests)} requests, expected {n}")


@pytest.mark.parametrize("seed", range(12))
async def test_cancel_video_details_at_seeded_points(seed: int) -> None:
    rng = random.Random(seed)
    # Point of cancellation: after 0..12 requests reached the server, then 0..3 loop turns.
    after_requests, extra_turns = rng.randint(0, 12), rng.randint(0, 3)
    faults = Faults(http_5xx=0.2, body_429=0.1) if seed % 2 else Faults()
    with loop_errors() as errors:
        async with FakeKeyAPI(latency=0.05, jitter=0.04, faults=faults, seed=seed) as server:
            ids = server.make_ids(200)
            async with ka.KeyAPIClient(
                "test-key",
                base_url=server.url,
                qps=400,
                max_concurrency=rng.choice([None, 1, 3, 8]),
                retry_policy=FAST_RETRIES,
            ) as client:
                call = asyncio.ensure_future(client.video_details(ids))
                await _wait_for_requests(server, after_requests)
                for _ in range(extra_turns):
                    await asyncio.sleep(0)
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call  # it may have finished before the cancel landed
                await asyncio.sleep(0)
                assert sdk_tasks() == []
                assert client._inflight.active == 0
                # Still usable: the same client fetches everything afterwards.
                server.faults = Faults()
                videos = await client.video_details(ids[:30])
                assert {v.video_id for v in videos} == {i for i in ids[:30] if server.is_known(i)}
        gc.collect()
    assert errors == []


@pytest.mark.parametrize("seed", range(6))
async def test_abandoning_iterators_midway_cancels_their_requests(seed: int) -> None:
    rng = random.Random(seed)
    with loop_errors() as errors:
        async with (
            FakeKeyAPI(latency=0.02, jitter=0.02, ranking_length=500, seed=seed) as server,
            ka.KeyAPIClient(
                "test-key", base_url=server.url, qps=400, retry_policy=FAST_RETRIES
            ) as client,
        ):
            stop_after = rng.randint(1, 40)
            async with contextlib.aclosing(client.iter_video_ranking(**RANK_ARGS)) as items:
                n = 0
                async for _ in items:
                    n += 1
                    if n == stop_after:
                        break
            async with contextlib.aclosing(
                client.iter_video_details(server.make_ids(300))
            ) as videos:
                async for _ in videos:
                    if rng.random() < 0.2:
                        break
            assert sdk_tasks() == []
            assert client._inflight.active == 0
            page = await client.video_ranking(**RANK_ARGS)
            assert len(page) == 10
        gc.collect()
    assert errors == []


async def test_cancelling_while_waiting_for_the_rate_limiter() -> None:
    with loop_errors() as errors:
        async with (
            FakeKeyAPI() as server,
            ka.KeyAPIClient("test-key", base_url=server.url, qps=2) as client,
        ):
            call = asyncio.ensure_future(client.video_details(server.make_ids(100)))
            await _wait_for_requests(server, 1)  # the rest queue in the limiter
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert sdk_tasks() == []
            sent = len(server.requests)
            assert sent <= 2  # nothing was sent after the cancel beyond the paced slot
    assert errors == []
