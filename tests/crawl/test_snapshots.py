"""``{date}`` partitions: one output a day, resume within a day, a new day starts afresh."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from crawl_helpers import jsonl_ids

import keyapi_async as ka
from keyapi_async.cli import main
from keyapi_async.testing import FakeKeyAPI

DETAIL = "/v1/tiktok/video/detail/analytics"


def asked(fake: FakeKeyAPI) -> list[str]:
    return [i for r in fake.requests if r.path == DETAIL for i in r.params["video_ids"].split(",")]


@pytest.mark.parametrize("sink_type", [ka.JsonlSink, ka.CsvSink, ka.ParquetSink])
async def test_daily_partitions_resume_within_their_day(
    server: FakeKeyAPI, make_client: Callable[..., ka.KeyAPIClient], tmp_path: Path,
    sink_type: type[Any],
) -> None:
    ids = server.make_ids(60)
    template = tmp_path / "videos" / "{date}.out"
    (tmp_path / "videos").mkdir()
    async with make_client(server) as client:
        first = await ka.crawl_video_details(
            client, ids[:30], sink_type(template, date="2026-11-20")
        )
        server.reset_counters()
        # Same day, all ids: only the 30 not done are asked for.
        rest = await ka.crawl_video_details(
            client, ids, sink_type(template, date=dt.date(2026, 11, 20))
        )
        assert sorted(asked(server)) == sorted(ids[30:])
        assert rest.skipped_resumed == 30 and rest.ok
        server.reset_counters()
        # The next day: a new partition, every id asked again.
        day2 = await ka.crawl_video_details(client, ids, sink_type(template, date="2026-11-21"))
        assert sorted(asked(server)) == sorted(ids)
    assert first.output == str(tmp_path / "videos" / "2026-11-20.out")
    assert day2.output == str(tmp_path / "videos" / "2026-11-21.out")
    assert day2.fetched == first.fetched + rest.fetched and day2.skipped_resumed == 0
    names = {p.name for p in (tmp_path / "videos").iterdir()}
    assert {"2026-11-20.out", "2026-11-21.out"} <= names
    assert "2026-11-21.out.state.json" in names


def test_expand_date() -> None:
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert ka.expand_date("v/{date}.jsonl") in (
        Path(f"v/{today}.jsonl"),
        Path(f"v/{dt.datetime.now(dt.timezone.utc).date().isoformat()}.jsonl"),  # midnight
    )
    expanded = ka.expand_date("v/{date}/{date}.csv", "2026-01-05")
    assert expanded == Path("v/2026-01-05/2026-01-05.csv")
    assert ka.expand_date("v.jsonl", "not a day") == Path("v.jsonl")
    with pytest.raises(ValueError, match="2026-11-21"):
        ka.expand_date("v/{date}.jsonl", "2026/01/05")


def test_cli_date_in_output(tmp_path: Path) -> None:
    ids = FakeKeyAPI().make_ids(15, known=True)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    before = dt.datetime.now(dt.timezone.utc).date()
    code = main(["videos", str(ids_file), "-o", str(tmp_path / "{date}.jsonl"),
                 "--mock", "--qps", "500"])
    after = dt.datetime.now(dt.timezone.utc).date()
    assert code == 0
    [out] = [tmp_path / f"{d.isoformat()}.jsonl" for d in {before, after}
             if (tmp_path / f"{d.isoformat()}.jsonl").exists()]
    assert sorted(jsonl_ids(out)) == sorted(ids)
