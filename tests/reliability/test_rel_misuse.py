"""Misuse ends in a clear ConfigurationError or just works: one client across successive
asyncio.run calls, one client from two threads at once, impossible settings refused at
construction, aclose() in the middle of a crawl."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from pathlib import Path

import pytest
from aiohttp import web
from conftest import API_KEY
from reliability.hostile import Hostile, LoopThread

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability

RANK = {"date": "2026-11-16", "region": "US", "video_rank_field": 1, "rank_type": 2}


def test_one_client_serves_successive_asyncio_run_calls() -> None:
    with LoopThread() as thread, warnings.catch_warnings():
        warnings.simplefilter("error")  # aiolimiter's reuse warning, unclosed sessions, ...
        api = FakeKeyAPI(latency=0.002)
        thread.run(api.start())
        try:
            ids = api.make_ids(40)
            client = ka.KeyAPIClient("test-key", base_url=api.url, qps=500)
            loop_errors: list[dict[str, object]] = []

            async def use() -> tuple[int, int]:
                asyncio.get_running_loop().set_exception_handler(
                    lambda _loop, context: loop_errors.append(context)
                )
                videos = await client.video_details(ids)
                ranked = await client.video_ranking(**RANK)
                return len(videos), len(ranked)

            first = asyncio.run(use())  # RuntimeError: Event loop is closed, before
            assert not client._transport.is_open  # closed with its loop, from inside it
            second = asyncio.run(use())
            third = asyncio.run(use())
            assert first == second == third and first[0] > 0
            assert len(api.requests) == 3 * 5  # 4 detail batches + 1 page per run

            async def close() -> None:
                await client.aclose()

            asyncio.run(close())
            with pytest.raises(ka.ConfigurationError, match="closed"):
                asyncio.run(use())
            gc.collect()  # an unclosed session of an earlier loop would warn here
            assert loop_errors == []  # no "Unclosed client session", no destroyed task
        finally:
            thread.run(api.stop())


def test_one_client_from_two_live_loops_at_once_is_refused() -> None:
    arrived = threading.Event()

    with LoopThread() as thread:
        release = asyncio.Event()

        async def hold(request: web.Request) -> web.Response:
            arrived.set()
            await release.wait()
            return web.json_response({"code": 0, "data": []})

        server = Hostile(hold)
        thread.run(server.__aenter__())
        client = ka.KeyAPIClient(API_KEY, base_url=server.url, max_retries=0)
        outcome: list[object] = []
        other = threading.Thread(
            target=lambda: outcome.append(asyncio.run(client.video_details(["1"])))
        )
        other.start()
        try:
            assert arrived.wait(30)  # the other thread's loop is using the client now
            with pytest.raises(ka.ConfigurationError, match="another event loop"):
                asyncio.run(client.video_details(["2"]))
            assert len(server.requests) == 1  # refused before sending
        finally:
            thread.loop.call_soon_threadsafe(release.set)
            other.join(30)
            thread.run(server.__aexit__())
    assert outcome == [[]]  # the first thread's call was not disturbed


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": 1e12}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"api_key": API_KEY + "\r\nX-Injected: 1"}, "'\\r'"),
        ({"api_key": API_KEY[:5] + "\n" + API_KEY[5:]}, "'\\n'"),
        ({"api_key": API_KEY + "\x00"}, "'\\x00'"),
        ({"api_key": "two words"}, "space"),
        ({"base_url": "https://user:secret-pw@api.test"}, "credentials"),
        ({"base_url": "https://api.test/?apikey=1"}, "query"),
        ({"base_url": "https://api.test#top"}, "fragment"),
        ({"base_url": "https://api.test:99999"}, "port"),
        ({"base_url": "https://api.test\n"}, "control"),
        ({"max_response_bytes": 0}, "max_response_bytes"),
        ({"max_response_bytes": 1.5}, "max_response_bytes"),
        ({"max_response_bytes": True}, "max_response_bytes"),
    ],
)
def test_impossible_settings_are_refused_at_construction(
    options: dict[str, object], words: str
) -> None:
    options = {"api_key": API_KEY, **options}
    with pytest.raises(ka.ConfigurationError) as info:
        ka.KeyAPIClient(**options)  # type: ignore[arg-type]
    text = str(info.value)
    assert words in text
    assert API_KEY not in text and API_KEY[5:] not in text and "secret-pw" not in text


async def test_aclose_during_a_crawl_opens_no_new_session(tmp_path: Path) -> None:
    fake = FakeKeyAPI()
    first_wave = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        if len(server.requests) >= 4:
            first_wave.set()
        await release.wait()
        asked = request.query["video_ids"].split(",")
        data = [fake.detail_record(i) for i in asked if fake.is_known(i)]
        return web.json_response({"code": 0, "data": data})

    server = Hostile(slow)
    ids = fake.make_ids(500)
    async with server:
        client = ka.KeyAPIClient(API_KEY, base_url=server.url, qps=1000, max_concurrency=4,
                                 retry_policy=ka.RetryPolicy(base_delay=0.001))
        crawl = asyncio.ensure_future(
            ka.crawl_video_details(client, ids, ka.JsonlSink(tmp_path / "out.jsonl"))
        )
        await first_wave.wait()
        await client.aclose()
        release.set()
        with pytest.raises(ka.ConfigurationError, match="closed") as info:
            await crawl
        assert not client._transport.is_open  # no session opened after aclose
        assert len(server.requests) == 4  # only what was on the wire when it closed
    report = info.value.report  # type: ignore[attr-defined]
    total = report.fetched + report.missing + len(report.failed) + report.not_attempted
    assert total == 500
