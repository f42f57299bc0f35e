"""Ranking backfills: a date range, one partition per list, complete lists skipped."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.cli import main
from keyapi_async.testing import FakeKeyAPI

RANKING = "/v1/tiktok/video/ranking/analytics"
QUERY = {"region": "US", "video_rank_field": 1}


@pytest.fixture
async def fake() -> AsyncIterator[FakeKeyAPI]:
    async with FakeKeyAPI(ranking_length=25) as server:
        yield server


def client(fake: FakeKeyAPI) -> ka.KeyAPIClient:
    return ka.KeyAPIClient("test-key", base_url=fake.url, qps=2000)


def pages_asked(fake: FakeKeyAPI) -> list[tuple[str, str]]:
    return [(r.params["date"], r.params["page_num"]) for r in fake.requests if r.path == RANKING]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_daily_range_one_partition_per_list_and_complete_lists_skipped(
    fake: FakeKeyAPI, tmp_path: Path
) -> None:
    out = str(tmp_path / "{date}.jsonl")
    seen: list[dt.date] = []
    async with client(fake) as c:
        # The first list is half done beforehand: the backfill finishes it.
        await ka.crawl_video_ranking(
            c, ka.JsonlSink(out, date="2024-05-01"), date="2024-05-01", rank_type=1,
            max_pages=1, **QUERY,
        )
        fake.reset_counters()
        result = await ka.crawl_ranking_range(
            c, out, start="2024-05-01", end="2024-05-03", rank_type=ka.RankType.DAY,
            on_list=lambda day, report: seen.append(day), **QUERY,
        )
        first = pages_asked(fake)
        fake.reset_counters()
        again = await ka.crawl_ranking_range(
            c, out, dates=["2024-05-03", "2024-05-01", "2024-05-02"], rank_type=1, **QUERY
        )
    days = [dt.date(2024, 5, d) for d in (1, 2, 3)]
    assert seen == days and list(result.lists) == days and result.ok
    # Pages 2..3 of the first list (page 1 was stored), all three of the others (plus,
    # perhaps, pages past the end, which the client's read-ahead window may ask for).
    assert len(first) == len(set(first)) and {a for a in first if int(a[1]) <= 3} == set(
        [("2024-05-01", "2"), ("2024-05-01", "3")]
        + [(d, str(p)) for d in ("2024-05-02", "2024-05-03") for p in (1, 2, 3)]
    )
    assert [r.fetched for r in result.lists.values()] == [15, 25, 25]
    assert result.total.fetched == 65 and result.total.skipped_resumed == 10
    assert result.skipped == []
    for day in days:
        records = lines(tmp_path / f"{day.isoformat()}.jsonl")
        expected = fake.ranking_records(day.isoformat(), "US", 1, 1)
        assert [r["video_id"] for r in records] == [r["video_id"] for r in expected[:25]]
    # The second run: every list complete, not one request.
    assert pages_asked(fake) == [] and again.skipped == days and again.ok
    assert again.total.fetched == 0 and again.to_dict()["total"]["requested"] == 75


async def test_weekly_range_takes_mondays_and_bad_dates_cost_nothing(
    fake: FakeKeyAPI, tmp_path: Path
) -> None:
    assert ka.ranking_dates(2, start="2024-04-30", end="2024-05-20") == [
        dt.date(2024, 4, 29) + dt.timedelta(weeks=n) for n in (1, 2, 3)
    ]
    assert ka.ranking_dates(3, start="2024-01-15", end="2024-04-01") == [
        dt.date(2024, m, 1) for m in (2, 3, 4)
    ]
    async with client(fake) as c:
        with pytest.raises(ka.InvalidParameterError, match="Monday"):
            await ka.crawl_ranking_range(
                c, str(tmp_path / "{date}.jsonl"), dates=["2024-05-06", "2024-05-07"],
                rank_type=2, **QUERY,
            )
        with pytest.raises(ka.InvalidParameterError, match="no monthly list"):
            await ka.crawl_ranking_range(
                c, str(tmp_path / "{date}.jsonl"), start="2024-05-02", end="2024-05-31",
                rank_type=3, **QUERY,
            )
        with pytest.raises(ka.InvalidParameterError, match=re.escape("{date}")):
            await ka.crawl_ranking_range(
                c, str(tmp_path / "all.jsonl"), start="2024-05-01", end="2024-05-02",
                rank_type=1, **QUERY,
            )
        with pytest.raises(ka.InvalidParameterError, match="after end"):
            ka.ranking_dates(1, start="2024-05-02", end="2024-05-01")
    assert fake.requests == [] and not any(tmp_path.iterdir())  # noqa: ASYNC240


def test_cli_backfill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "w-{date}.jsonl")
    base = ["ranking", "--region", "US", "--rank-field", "views", "--rank-type", "week",
            "--max-pages", "2", "--mock", "--qps", "500", "-o", out]
    assert main([*base, "--from", "2024-05-01", "--to", "2024-05-20"]) == 0
    text = capsys.readouterr().out
    for monday in ("2024-05-06", "2024-05-13", "2024-05-20"):
        assert len(lines(tmp_path / f"w-{monday}.jsonl")) == 20
        assert re.search(rf"{monday} +20 records", text), text
    assert re.search(r"records stored +60\n", text)
    # Again, as a list of dates: both complete, skipped.
    assert main([*base, "--dates", "2024-05-06,2024-05-13"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"records stored +0\n", text) and text.count("already done") == 2
    # A Tuesday in a weekly backfill: refused before any request (exit 2).
    assert main([*base, "--dates", "2024-05-06,2024-05-07"]) == 2
    assert "Monday" in capsys.readouterr().err
