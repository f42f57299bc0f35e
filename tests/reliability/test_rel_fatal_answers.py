"""Calls that cannot succeed stop early: an unreachable API (APIUnreachableError), a wrong
base_url answered with bare 404s (EndpointNotFoundError), a key refused with 403
(PermissionDeniedError). Every id is still accounted for.

Run with ``-s`` for the figures quoted in docs/reliability.md."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiohttp import web
from conftest import API_KEY
from reliability.hostile import Hostile, closed_port

import keyapi_async as ka
from keyapi_async.pipeline.reachability import UNREACHABLE_AFTER, Reachability
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability

CAP = 8  # in-flight cap: at most this many requests can still be on the wire when a call halts


def accounted(report: ka.CrawlReport, n: int) -> bool:
    return report.fetched + report.missing + len(report.failed) + report.not_attempted == n


async def test_an_unreachable_api_ends_a_crawl_after_a_bounded_number_of_attempts(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    ids = FakeKeyAPI().make_ids(2000)
    started = time.perf_counter()
    async with ka.KeyAPIClient(API_KEY, base_url=url, qps=200, max_concurrency=CAP) as client:
        with pytest.raises(ka.APIUnreachableError) as info:
            await ka.crawl_video_details(client, ids, ka.JsonlSink(tmp_path / "out.jsonl"))
        requests = client.stats.requests
    seconds = time.perf_counter() - started
    err = info.value
    assert isinstance(err, ka.APIConnectionError) and err.fatal and not err.retryable
    assert url in str(err) and "in a row" in str(err) and "base_url" in str(err)
    # 1,000 requests and 800 retries before; now the streak plus what was in flight.
    assert UNREACHABLE_AFTER <= requests <= UNREACHABLE_AFTER + CAP
    report = err.report  # type: ignore[attr-defined]
    assert accounted(report, 2000) and report.fetched == 0
    print(f"\nunreachable: 2,000 ids, {requests} requests, {seconds:.2f} s")


async def test_an_unreachable_api_ends_a_ranking_crawl_too(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with ka.KeyAPIClient(API_KEY, base_url=url, qps=200, max_concurrency=CAP,
                               retry_policy=ka.RetryPolicy(base_delay=0.001)) as client:
        with pytest.raises(ka.APIConnectionError):
            await ka.crawl_video_ranking(
                client, ka.JsonlSink(tmp_path / "r.jsonl"), date="2026-11-16", region="US",
                video_rank_field=1, rank_type=2,
            )
        assert client.stats.requests <= UNREACHABLE_AFTER + CAP


def test_an_outage_shorter_than_a_requests_retries_is_ridden_out() -> None:
    reach = Reachability(attempts=3, patience=5.0)
    assert [reach.unanswered(t) for t in (0.0, 0.1, 0.2)] == [False, False, True]  # never answered
    reach.answered()
    # Once the API has answered, a streak must also outlast one request's retry schedule.
    assert [reach.unanswered(t) for t in (10.0, 10.1, 10.2, 14.9)] == [False] * 4
    assert reach.unanswered(15.0)
    reach.answered()  # any answer ends the streak
    assert not reach.unanswered(20.0)


async def test_a_wrong_base_url_answered_with_bare_404s_is_fatal(tmp_path: Path) -> None:
    async with FakeKeyAPI() as server:
        ids = server.make_ids(3000)
        async with ka.KeyAPIClient(
            "test-key", base_url=server.url + "/v1", qps=500, max_concurrency=CAP
        ) as client:
            started = time.perf_counter()
            with pytest.raises(ka.EndpointNotFoundError) as info:
                await ka.crawl_video_details(client, ids, ka.JsonlSink(tmp_path / "o.jsonl"))
            seconds = time.perf_counter() - started
            requests = client.stats.requests  # the fake logs only its API paths
    err = info.value
    assert err.status == 404 and err.fatal and "base_url" in str(err) and "/v1" in str(err)
    assert 1 <= requests <= CAP  # 300 requests for 3,000 ids before
    assert accounted(err.report, 3000)  # type: ignore[attr-defined]
    print(f"\nwrong path: 3,000 ids, {requests} requests, {seconds:.2f} s")


async def test_an_envelope_404_is_not_taken_for_a_wrong_base_url() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"code": 404, "message": "no such video"}, status=404)

    async with Hostile(handler) as server, ka.KeyAPIClient(API_KEY, base_url=server.url) as c:
        with pytest.raises(ka.KeyAPIError) as info:
            await c.video_details(["1"])
    assert not isinstance(info.value, ka.EndpointNotFoundError) and not info.value.fatal


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, b'{"code":403,"message":"apiKey not allowed on this endpoint"}'),
        (200, b'{"code":403,"message":"plan quota used up","requestId":"q"}'),
        (403, b"<html><body>403 Forbidden</body></html>"),
    ],
)
async def test_403_is_a_fatal_permission_error(status: int, body: bytes, tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    ids = FakeKeyAPI().make_ids(500)
    async with Hostile(handler) as server, ka.KeyAPIClient(
        API_KEY, base_url=server.url, qps=500, max_concurrency=CAP
    ) as client:
        with pytest.raises(ka.PermissionDeniedError) as info:
            await ka.crawl_video_details(client, ids, ka.JsonlSink(tmp_path / "o.jsonl"))
    err = info.value
    assert err.fatal and not err.retryable and err.code == 403
    assert "not allowed on this endpoint" in err.hint and "quota" in err.hint
    assert len(server.requests) <= CAP  # fatal: no retry, no new request after it
    report = err.report  # type: ignore[attr-defined]
    assert accounted(report, 500) and report.not_attempted > 0
