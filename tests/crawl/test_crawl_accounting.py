"""crawl_video_details against the fake server over real sockets: accounting, aborts, stop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

Make = Callable[..., ka.KeyAPIClient]


def assert_accounting(report: ka.CrawlReport) -> None:
    assert report.requested == (
        report.skipped_resumed + report.fetched + report.missing + len(report.failed)
        + report.not_attempted
    )


async def test_faults_accounting_exact(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path, helpers: Any
) -> None:
    # About 30 % of attempts damaged and one retry only, so some batches fail for
    # good: each batch fails with p ~ 0.09, so none failing among 150 has p < 1e-6.
    # (At 10 % the chance that none failed was ~0.4: the test flaked in CI.)
    server.faults = Faults(http_5xx=0.2, reset=0.05, truncated=0.05, body_429=0.02)
    ids = server.make_ids(1500)
    out = tmp_path / "out.jsonl"
    async with make_client(server, max_retries=1) as client:
        report = await ka.crawl_video_details(client, ids + ids[:50], ka.JsonlSink(out))
    assert_accounting(report)
    assert report.requested == 1500 and report.not_attempted == 0
    assert report.failed, "with one retry at ~30 % faults some batches must fail"
    written = helpers.jsonl_ids(out)
    assert len(written) == len(set(written)) == report.fetched
    missing = (tmp_path / "out.jsonl.missing.txt").read_text().split()
    assert len(missing) == report.missing
    assert all(server.is_known(i) for i in written)
    assert not any(server.is_known(i) for i in missing)
    # Every id in exactly one bucket.
    buckets = Counter(written) + Counter(missing) + Counter(list(report.failed))
    assert set(buckets) == set(ids) and set(buckets.values()) == {1}
    for reason in report.failed.values():
        assert reason.split(":")[0] in {"ServerError", "APIConnectionError", "DecodeError",
                                        "RateLimitError"}
    stats = server.stats()
    assert report.requests == stats.requests
    # Damaged-but-charged answers are invisible client-side: the server may count more.
    assert report.credits_spent <= stats.credits_spent
    assert not report.ok

    # The re-run asks only for the failed ids, and nothing else.
    server.faults = Faults()
    server.reset_counters()
    async with make_client(server) as client:
        again = await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
    assert_accounting(again)
    assert again.ok and again.skipped_resumed == 1500 - len(report.failed)
    assert sorted(helpers.requested_ids(server.requests)) == sorted(report.failed)
    final = helpers.jsonl_ids(out)
    assert len(final) == len(set(final))


async def test_revoked_key_aborts_with_report(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path, helpers: Any
) -> None:
    server.faults = Faults(revoke_after=7)
    ids = server.make_ids(300)
    out = tmp_path / "out.jsonl"
    async with make_client(server, max_concurrency=1) as client:
        with pytest.raises(ka.AuthenticationError) as caught:
            await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
    report = caught.value.report  # type: ignore[attr-defined]
    assert_accounting(report)
    assert report.requested == 300
    assert report.fetched + report.missing == 70
    assert len(report.failed) == 10  # the batch refused with 401
    assert report.not_attempted == 220
    assert report.aborted and report.aborted.startswith("AuthenticationError")
    log = server.requests
    assert log[-1].status == 401 and sum(r.status == 401 for r in log) == 1
    assert len(helpers.jsonl_ids(out)) == report.fetched
    assert "aborted" in (tmp_path / "out.jsonl.state.json").read_text()


async def test_quota_abort_concurrent_then_resume(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path, helpers: Any
) -> None:
    server.set_credits("test-key", 20)
    ids = server.make_ids(500)
    out = tmp_path / "out.jsonl"
    async with make_client(server, max_concurrency=8) as client:
        with pytest.raises(ka.QuotaExceededError) as caught:
            await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
    report = caught.value.report  # type: ignore[attr-defined]
    assert_accounting(report)
    assert report.credits_spent == 20 and report.not_attempted > 0
    log = server.requests
    first_402 = next(n for n, r in enumerate(log) if r.status == 402)
    # After the first 402 only requests already started may arrive: at most the in-flight cap.
    assert len(log) - first_402 <= 8
    written = helpers.jsonl_ids(out)

    server.set_credits("test-key", None)
    server.reset_counters()
    async with make_client(server) as client:
        again = await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
    assert again.ok
    asked = helpers.requested_ids(server.requests)
    assert not set(asked) & set(written), "an id already written was requested again"
    assert len(asked) == len(set(asked))
    final = helpers.jsonl_ids(out)
    assert len(final) == len(set(final)) == report.fetched + again.fetched


async def test_bad_id_in_collection_refused_before_any_request(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path
) -> None:
    ids = [*server.make_ids(30), "12x4"]
    async with make_client(server) as client:
        with pytest.raises(ka.InvalidParameterError, match="position 30"):
            await ka.crawl_video_details(client, ids, ka.JsonlSink(tmp_path / "o.jsonl"))
    assert server.requests == []
    assert not (tmp_path / "o.jsonl").exists()


async def test_bad_id_in_lazy_input_stops_with_report(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path
) -> None:
    good = server.make_ids(60)

    def source() -> Any:
        yield from good[:25]
        yield "not-an-id"
        yield from good[25:]

    async with make_client(server) as client:
        with pytest.raises(ka.InvalidParameterError) as caught:
            await ka.crawl_video_details(client, source(), ka.JsonlSink(tmp_path / "o.jsonl"))
    report = caught.value.report  # type: ignore[attr-defined]
    assert_accounting(report)
    assert report.fetched + report.missing == 25 and report.not_attempted == 35


async def test_async_source_custom_sink_and_duplicates(
    server: FakeKeyAPI, make_client: Make
) -> None:
    ids = server.make_ids(95)

    async def source() -> AsyncIterator[int]:
        for i in ids + ids[:20]:
            yield int(i)

    class ListSink:
        def __init__(self) -> None:
            self.records: list[ka.VideoDetail] = []
            self.closed = False

        async def write(self, records: Any) -> None:
            self.records.extend(records)

        async def close(self) -> None:
            self.closed = True

    sink = ListSink()
    async with make_client(server) as client:
        report = await ka.crawl_video_details(client, source(), sink)
    assert sink.closed and report.ok and report.requested == 95
    assert sorted(r.video_id for r in sink.records) == sorted(i for i in ids if server.is_known(i))
    assert report.credits_spent == 10 and report.output is None


async def test_stop_event_then_resume(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path, helpers: Any
) -> None:
    ids = server.make_ids(2000)
    out = tmp_path / "out.jsonl"
    stop = asyncio.Event()

    def on_progress(report: ka.CrawlReport) -> None:
        if report.fetched >= 300:
            stop.set()

    async with make_client(server, qps=500, max_concurrency=4) as client:
        report = await ka.crawl_video_details(
            client, ids, ka.JsonlSink(out), on_progress=on_progress, stop=stop
        )
    assert report.aborted == "interrupted" and report.not_attempted > 0
    assert_accounting(report)
    written = helpers.jsonl_ids(out)
    assert len(written) == report.fetched
    assert '"status": "interrupted"' in (tmp_path / "out.jsonl.state.json").read_text()

    server.reset_counters()
    async with make_client(server) as client:
        again = await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
    assert again.ok and again.skipped_resumed == report.fetched + report.missing
    assert not set(helpers.requested_ids(server.requests)) & set(written)
    final = helpers.jsonl_ids(out)
    assert len(final) == len(set(final))
    assert set(final) == {i for i in ids if server.is_known(i)}


async def test_no_resume_starts_over(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path, helpers: Any
) -> None:
    ids = server.make_ids(40)
    out = tmp_path / "out.jsonl"
    async with make_client(server) as client:
        await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
        again = await ka.crawl_video_details(client, ids, ka.JsonlSink(out), resume=False)
    assert again.skipped_resumed == 0 and again.credits_spent == 4
    assert sorted(helpers.jsonl_ids(out)) == sorted(i for i in ids if server.is_known(i))


async def test_resume_refuses_another_crawl_in_the_output(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    async with make_client(server) as client:
        await ka.crawl_video_ranking(
            client, ka.JsonlSink(out), date="2024-05-01", region="US",
            video_rank_field=1, rank_type=1, max_pages=1,
        )
        server.reset_counters()
        with pytest.raises(ka.InvalidParameterError, match="another crawl"):
            await ka.crawl_video_details(client, server.make_ids(5), ka.JsonlSink(out))
    assert server.requests == []
