"""Crawls and 429s: a storm ends after rate_limit_patience with every id accounted for,
and a resumed qps="auto" crawl starts from the rate the previous run learned."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

Make = Callable[..., ka.KeyAPIClient]


async def test_a_429_storm_ends_after_the_patience_with_every_id_accounted_for(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path, helpers: Any
) -> None:
    server.faults = Faults(body_429=1.0)  # every answer is a 429 (in the body, no Retry-After)
    ids = server.make_ids(200)
    out = tmp_path / "out.jsonl"
    async with make_client(server, rate_limit_patience=0.3, max_concurrency=4) as client:
        with pytest.raises(ka.RateLimitError) as caught:
            await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
    error = caught.value
    assert error.fatal and "rate_limit_patience=0.3" in str(error)
    report = error.report  # type: ignore[attr-defined]
    assert report.requested == 200 == (
        report.fetched + report.missing + len(report.failed) + report.not_attempted
    )
    assert report.fetched == report.missing == report.credits_spent == 0
    # Only the batch whose 429 ran out of patience is failed (with the reason); the rest
    # were given up unsent or never taken from the input: a resume asks for them.
    assert len(report.failed) <= 10 and report.not_attempted >= 190
    assert all("rate_limit_patience" in reason for reason in report.failed.values())
    assert report.aborted and report.aborted.startswith("RateLimitError")
    assert report.retries == 0 and report.rate_limited == server.stats().requests > 1
    assert json.loads((tmp_path / "out.jsonl.state.json").read_text())["status"] == "aborted"

    # The storm is over: the resumed crawl fetches everything, each id once.
    server.faults = Faults()
    async with make_client(server) as client:
        again = await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
    assert again.ok and again.fetched + again.missing == 200
    assert len(helpers.jsonl_ids(out)) == again.fetched


async def test_a_resumed_auto_crawl_starts_from_the_learned_rate(
    make_client: Make, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    state = tmp_path / "out.jsonl.state.json"
    async with FakeKeyAPI(qps=10, latency=0.01) as server:
        ids = server.make_ids(400)
        async with make_client(server, qps="auto") as client:
            report = await ka.crawl_video_details(client, ids[:300], ka.JsonlSink(out))
        assert report.rate_limited > 0  # slow start went past 10 qps
        learned = json.loads(state.read_text())["learned_qps"]
        assert learned == client.stats.learned_qps and 10 <= learned < 200

        rates: list[float] = []
        async with make_client(server, qps="auto") as resumed:
            await ka.crawl_video_details(
                resumed, ids, ka.JsonlSink(out), on_progress=lambda _: rates.append(resumed.qps)
            )
        # Not slow start from 5 again, but from just below the learned rate (0.8 x
        # learned; one more cut at most before the first batch is back).
        assert rates[0] >= 0.8 * 0.8 * learned > 6
        assert json.loads(state.read_text())["learned_qps"] is not None


def test_cli_qps_auto_with_mock_and_bad_settings(tmp_path: Path, helpers: Any) -> None:
    from keyapi_async.cli import main

    ids = FakeKeyAPI().make_ids(200)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    out = tmp_path / "o.jsonl"
    code = main(["videos", str(tmp_path / "ids.txt"), "-o", str(out), "--mock", "--qps", "auto",
                 "--max-qps", "40"])
    assert code == 0
    assert len(helpers.jsonl_ids(out)) == sum(FakeKeyAPI().is_known(i) for i in ids)
    # A ceiling without auto is a configuration error, before any request.
    done = helpers.cli("videos", str(tmp_path / "ids.txt"), "-o", str(tmp_path / "x.jsonl"),
                       "--base-url", "http://127.0.0.1:9", "--qps", "10", "--max-qps", "20")
    assert done.returncode != 0 and "max_qps" in done.stderr
    done = helpers.cli("videos", "-", "-o", str(tmp_path / "y.jsonl"), "--qps", "fast")
    assert done.returncode == 2 and "'auto'" in done.stderr
