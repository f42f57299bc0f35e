"""crawl_video_ranking: whole lists in order, resume after the last page, page failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

Make = Callable[..., ka.KeyAPIClient]
QUERY = {"date": "2024-05-01", "region": "US", "video_rank_field": 1, "rank_type": 1}


def pages_asked(server: FakeKeyAPI) -> list[int]:
    return sorted(int(r.params["page_num"]) for r in server.requests)


async def test_ranking_resumes_after_last_page(
    make_client: Make, tmp_path: Path, helpers: Any
) -> None:
    async with FakeKeyAPI(ranking_length=95) as server:
        out = tmp_path / "r.jsonl"
        async with make_client(server) as client:
            first = await ka.crawl_video_ranking(client, ka.JsonlSink(out), max_pages=4, **QUERY)
            assert first.pages == 4 and first.fetched == 40 and not first.complete
            server.reset_counters()
            rest = await ka.crawl_video_ranking(client, ka.JsonlSink(out), **QUERY)
            asked = pages_asked(server)
            # No stored page asked again (pages past the end may be fetched speculatively).
            assert asked[0] == 5 and set(range(5, 11)) <= set(asked)
            assert len(asked) == len(set(asked))
            assert rest.skipped_resumed == 40 and rest.fetched == 55 and rest.complete
            server.reset_counters()
            done = await ka.crawl_video_ranking(client, ka.JsonlSink(out), **QUERY)
        # The complete list sends nothing. (The server's log may still show a speculative
        # page past the end that the previous crawl cancelled on the wire, logged after the
        # reset.)
        assert done.requests == 0 and done.complete and done.fetched == 0
        assert all(page > 10 for page in pages_asked(server))
        expected = [r["video_id"] for r in server.ranking_records("2024-05-01", "US", 1, 1)]
        assert helpers.jsonl_ids(out) == expected


async def test_ranking_page_failure_aborts_then_resumes(
    make_client: Make, tmp_path: Path, helpers: Any
) -> None:
    async with FakeKeyAPI(ranking_length=60) as server:
        out = tmp_path / "r.jsonl"
        server.faults = Faults(http_5xx={3, 4})  # page 3 fails twice: out of retries
        async with make_client(server, max_retries=1, max_concurrency=1) as client:
            with pytest.raises(ka.ServerError) as caught:
                await ka.crawl_video_ranking(client, ka.JsonlSink(out), **QUERY)
            report = caught.value.report  # type: ignore[attr-defined]
            assert report.pages == 2 and report.fetched == 20 and report.aborted
            assert len(helpers.jsonl_ids(out)) == 20
            server.faults = Faults()
            server.reset_counters()
            again = await ka.crawl_video_ranking(client, ka.JsonlSink(out), **QUERY)
        assert again.complete and pages_asked(server)[0] == 3
        expected = [r["video_id"] for r in server.ranking_records("2024-05-01", "US", 1, 1)]
        assert helpers.jsonl_ids(out) == expected


async def test_ranking_stop_keeps_whole_pages(
    make_client: Make, tmp_path: Path, helpers: Any
) -> None:
    async with FakeKeyAPI(ranking_length=500, latency=0.002) as server:
        out = tmp_path / "r.jsonl"
        stop = asyncio.Event()

        def on_progress(report: ka.CrawlReport) -> None:
            if report.pages >= 5:
                stop.set()

        async with make_client(server, max_concurrency=2) as client:
            report = await ka.crawl_video_ranking(
                client, ka.JsonlSink(out), on_progress=on_progress, stop=stop, **QUERY
            )
            assert report.aborted == "interrupted" and not report.complete
            assert report.fetched == 10 * report.pages
            again = await ka.crawl_video_ranking(client, ka.JsonlSink(out), **QUERY)
        assert again.complete
        expected = [r["video_id"] for r in server.ranking_records("2024-05-01", "US", 1, 1)]
        assert helpers.jsonl_ids(out) == expected


async def test_ranking_bad_query_refused_before_sending(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path
) -> None:
    async with make_client(server) as client:
        with pytest.raises(ka.InvalidParameterError, match="Monday"):
            await ka.crawl_video_ranking(
                client, ka.JsonlSink(tmp_path / "r.jsonl"),
                date="2024-05-01", region="US", video_rank_field=1, rank_type=2,
            )
        with pytest.raises(ka.InvalidParameterError, match="max_pages"):
            await ka.crawl_video_ranking(
                client, ka.JsonlSink(tmp_path / "r.jsonl"), max_pages=0, **QUERY
            )
    assert server.requests == []
