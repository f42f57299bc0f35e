"""Each sink's output read back and compared with the records; torn tails; missing extra."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

Make = Callable[..., ka.KeyAPIClient]
RANKING = {"date": "2024-05-01", "region": "US", "video_rank_field": 2, "rank_type": 1}


async def _expected(server: FakeKeyAPI, make_client: Make, ids: list[str]) -> list[Any]:
    async with make_client(server) as client:
        return await client.video_details(ids)


def _by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["video_id"]: r for r in records}


def _unstamped(records: list[Any]) -> list[Any]:
    """The records without their lineage (after checking every one has it)."""
    assert all(isinstance(r.fetched_at, datetime) and r.request_id for r in records)
    return [
        msgspec.structs.replace(r, fetched_at=msgspec.UNSET, request_id=msgspec.UNSET)
        for r in records
    ]


def _lineage_popped(rows: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """Remove the lineage columns from ``rows``; return them."""
    return [(row.pop("fetched_at"), row.pop("request_id")) for row in rows]


async def test_jsonl_roundtrip(server: FakeKeyAPI, make_client: Make, tmp_path: Path) -> None:
    ids = server.make_ids(120)
    out = tmp_path / "v.jsonl"
    async with make_client(server) as client:
        report = await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
    stored = msgspec.json.Decoder(ka.VideoDetail).decode_lines(out.read_bytes())
    expected = await _expected(server, make_client, ids)
    assert report.fetched == len(expected) == len(stored)
    assert sorted(_unstamped(stored), key=lambda v: v.video_id or "") == sorted(
        expected, key=lambda v: v.video_id or ""
    )


async def test_csv_roundtrip(server: FakeKeyAPI, make_client: Make, tmp_path: Path) -> None:
    ids = server.make_ids(120)
    out = tmp_path / "v.csv"
    async with make_client(server) as client:
        await ka.crawl_video_details(client, ids, ka.CsvSink(out))
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = await _expected(server, make_client, ids)
    assert list(rows[0]) == [f.name for f in msgspec.structs.fields(ka.VideoDetail)]
    lineage = _lineage_popped(rows)
    assert all(datetime.fromisoformat(at).tzinfo and rid for at, rid in lineage)
    got = _by_id(rows)
    assert len(rows) == len(got) == len(expected)
    for record in msgspec.to_builtins(expected):
        row = got[record["video_id"]]
        for name, value in record.items():
            text = "" if value is None else (
                ("true" if value else "false") if isinstance(value, bool) else str(value)
            )
            assert row[name] == text, name


async def test_csv_ranking_lists_as_json(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path
) -> None:
    out = tmp_path / "r.csv"
    async with make_client(server) as client:
        await ka.crawl_video_ranking(client, ka.CsvSink(out), max_pages=2, **RANKING)
        expected = await client.video_ranking(page_size=10, **RANKING)
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20
    first = expected[0]
    assert rows[0]["video_id"] == first.video_id
    assert msgspec.json.decode(rows[0]["video_products"]) == first.video_products
    categories = msgspec.json.decode(rows[0]["product_category_list"])
    assert categories == msgspec.to_builtins(first.product_category_list)


@pytest.mark.parametrize("rows_per_part", [1000, 25])
async def test_parquet_roundtrip(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path, rows_per_part: int
) -> None:
    ids = server.make_ids(150)
    out = tmp_path / "v.parquet"
    async with make_client(server) as client:
        report = await ka.crawl_video_details(
            client, ids, ka.ParquetSink(out, rows_per_part=rows_per_part)
        )
    parts = sorted(out.iterdir())
    assert all(p.name.startswith("part-") and p.suffix == ".parquet" for p in parts)
    sizes = [pq.read_metadata(p).num_rows for p in parts]
    assert sum(sizes) == report.fetched
    # Every part but the last is full (batches of up to 10 may overshoot it a little).
    assert all(rows_per_part <= n < rows_per_part + 10 for n in sizes[:-1])
    assert len(parts) == 1 if rows_per_part > report.fetched else len(parts) > 3
    table = pq.read_table(out)
    assert str(table.schema.field("fetched_at").type) == "timestamp[us, tz=UTC]"
    expected = await _expected(server, make_client, ids)
    want = _by_id(msgspec.to_builtins(expected, builtin_types=(datetime,)))
    rows = table.to_pylist()
    assert all(at is not None and rid for at, rid in _lineage_popped(rows))
    got = _by_id(rows)
    assert got == want


async def test_parquet_ranking_nested_types(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path
) -> None:
    out = tmp_path / "r.parquet"
    async with make_client(server) as client:
        await ka.crawl_video_ranking(client, ka.ParquetSink(out), max_pages=3, **RANKING)
        expected = await client.video_ranking(page_size=10, page_num=2, **RANKING)
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 30
    lineage = _lineage_popped(rows)
    # One answer, one stamp: the ten records of page 2 share theirs, pages differ.
    assert len(set(lineage[10:20])) == 1 and len(set(lineage)) == 3
    assert rows[10:20] == msgspec.to_builtins(expected, builtin_types=(datetime,))


async def test_parquet_killed_writer_journal_recovered(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path
) -> None:
    out = tmp_path / "v.parquet"
    ids = server.make_ids(60)
    expected = await _expected(server, make_client, ids)
    sink = ka.ParquetSink(out, rows_per_part=20)
    await sink.write(expected[:25])  # one part closed, 5 records journaled
    await sink.write(expected[25:30])
    # Simulate kill -9: never closed; a torn journal line as well.
    journal = next(out.glob("_part-*.jsonl"))
    with journal.open("ab") as handle:
        handle.write(b'{"video_id": "71')
    fresh = ka.ParquetSink(out, rows_per_part=20)
    recovered = [i for i in fresh.recover() if i is not None]
    assert recovered == [v.video_id for v in expected[:30]]
    assert not list(out.glob("_part-*"))
    assert pq.read_table(out).num_rows == 30


async def test_parquet_part_and_stale_journal_not_duplicated(tmp_path: Path) -> None:
    out = tmp_path / "v.parquet"
    records = [ka.VideoDetail(video_id=str(7000 + n)) for n in range(10)]
    sink = ka.ParquetSink(out, rows_per_part=10)
    await sink.write(records[:5])
    journal = next(out.glob("_part-*.jsonl"))
    saved = journal.read_bytes()
    await sink.write(records[5:])  # completes part 0, journal removed
    journal.write_bytes(saved)  # as if killed between the part's rename and the unlink
    assert [i for i in ka.ParquetSink(out).recover()] == [r.video_id for r in records]


async def test_jsonl_torn_tail_cut_on_recover(tmp_path: Path) -> None:
    out = tmp_path / "v.jsonl"
    sink = ka.JsonlSink(out)
    await sink.write([ka.VideoDetail(video_id="1"), ka.VideoDetail(video_id="2")])
    await sink.close()
    with out.open("ab") as handle:
        handle.write(b'{"video_id":"3","user_')
    assert list(ka.JsonlSink(out).recover()) == ["1", "2"]
    assert out.read_bytes().endswith(b"}\n") and out.read_bytes().count(b"\n") == 2


async def test_csv_torn_row_cut_on_recover(tmp_path: Path) -> None:
    out = tmp_path / "v.csv"
    sink = ka.CsvSink(out)
    await sink.write([ka.VideoDetail(video_id="1", video_desc="two\nlines")])
    await sink.close()
    good = out.read_bytes()
    # Torn inside a quoted field, right after an embedded newline.
    with out.open("ab") as handle:
        handle.write(b'2,,,"half a\n')
    fresh = ka.CsvSink(out)
    assert list(fresh.recover()) == ["1"]
    assert out.read_bytes() == good
    await fresh.write([ka.VideoDetail(video_id="3")])
    await fresh.close()
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["video_id"] for r in rows] == ["1", "3"]
    assert rows[0]["video_desc"] == "two\nlines"


def test_parquet_without_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ka.MissingExtraError, match=r"keyapi-async\[parquet\]") as caught:
        ka.ParquetSink("x.parquet")
    assert isinstance(caught.value, ImportError)


def test_custom_objects_satisfy_the_sink_protocol(tmp_path: Path) -> None:
    assert isinstance(ka.JsonlSink(tmp_path / "a"), ka.Sink)
    assert not isinstance(object(), ka.Sink)


@pytest.mark.parametrize("sink_type", [ka.JsonlSink, ka.CsvSink, ka.ParquetSink])
@pytest.mark.parametrize("lineage", [True, False])
async def test_lineage_columns_present_or_absent(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path, sink_type: type[Any], lineage: bool
) -> None:
    ids = server.make_ids(30, known=True)
    out = tmp_path / f"v.{sink_type.__name__}"
    async with make_client(server) as client:
        await ka.crawl_video_details(client, ids, sink_type(out), lineage=lineage)
        requests = client.stats.requests
    if sink_type is ka.JsonlSink:
        rows = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    elif sink_type is ka.CsvSink:
        with out.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    else:
        rows = pq.read_table(out).to_pylist()
    assert len(rows) == 30
    present = [name in row for row in rows for name in ka.LINEAGE_FIELDS]
    assert all(present) if lineage else not any(present)
    if lineage:
        # One request id and one time per answer of up to 10 records.
        assert len({row["request_id"] for row in rows}) == requests == 3
        assert len({str(row["fetched_at"]) for row in rows}) <= 3


async def test_a_resume_cannot_switch_lineage(
    server: FakeKeyAPI, make_client: Make, tmp_path: Path
) -> None:
    ids = server.make_ids(20, known=True)
    out = tmp_path / "v.csv"
    async with make_client(server) as client:
        await ka.crawl_video_details(client, ids[:10], ka.CsvSink(out))
        with pytest.raises(ka.InvalidParameterError, match="another crawl"):
            await ka.crawl_video_details(client, ids, ka.CsvSink(out), lineage=False)
        report = await ka.crawl_video_details(client, ids, ka.CsvSink(out))
    assert (report.skipped_resumed, report.fetched) == (10, 10)


async def test_lineage_of_records_served_by_the_cache(
    server: FakeKeyAPI, tmp_path: Path
) -> None:
    ids = server.make_ids(20, known=True)
    cache = ka.MemoryCache(ttl=3600)
    async with ka.KeyAPIClient("test-key", base_url=server.url, qps=1000, cache=cache) as c:
        await ka.crawl_video_details(c, ids, ka.JsonlSink(tmp_path / "a.jsonl"), use_cache=True)
        requests = c.stats.requests
        # From the cache: the lineage of the answers that filled it, not a new one.
        await ka.crawl_video_details(c, ids, ka.JsonlSink(tmp_path / "b.jsonl"), use_cache=True)
        # Without lineage, from the same (stamped) cache records: no columns at all.
        await ka.crawl_video_details(
            c, ids, ka.CsvSink(tmp_path / "c.csv"), use_cache=True, lineage=False
        )
        assert c.stats.requests == requests
        [again] = await c.video_details(ids[:1])
    first, second = (
        sorted((r["video_id"], r["fetched_at"], r["request_id"]) for r in rows)
        for rows in (
            [msgspec.json.decode(line) for line in (tmp_path / n).read_bytes().splitlines()]
            for n in ("a.jsonl", "b.jsonl")
        )
    )
    assert first == second and all(rid for _, _, rid in first)
    header = (tmp_path / "c.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert "fetched_at" not in header and "request_id" not in header
    assert isinstance(again.fetched_at, datetime)  # the cache holds the crawl's records
