"""PostgresSink against a real PostgreSQL server: typed columns, every field read back,
upserts, snapshots, atomic batches, missing ids, resume, and a lost connection."""

from __future__ import annotations

import datetime as dt
import importlib
import typing
import uuid
from typing import Any

import msgspec
import pytest

import keyapi_async as ka
from keyapi_async.bulk.sinks import postgres
from keyapi_async.testing import FakeKeyAPI

RANKING = {"date": "2024-05-01", "region": "US", "video_rank_field": 2, "rank_type": 1}
DAY1, DAY2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
SCALARS = {str: "text", int: "bigint", bool: "boolean", dt.datetime: "timestamp with time zone"}


async def fetch_details(n: int) -> list[ka.VideoDetail]:
    async with FakeKeyAPI() as fake, ka.KeyAPIClient(
        "test-key", base_url=fake.url, qps=10_000
    ) as client:
        return await client.video_details(fake.make_ids(n, known=True))


async def fetch_ranking(pages: int = 10) -> list[ka.RankedVideo]:
    async with FakeKeyAPI() as fake, ka.KeyAPIClient(
        "test-key", base_url=fake.url, qps=10_000
    ) as client:
        return [v async for v in client.iter_video_ranking(max_pages=pages, **RANKING)]


async def stored(db: Any, table: str, order: str = "video_id") -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(f'SELECT * FROM "{table}" ORDER BY {order}')]


async def all_ids(sink: ka.PostgresSink) -> list[str]:
    return [vid async for vid in sink.resume_ids()]


@pytest.mark.parametrize("record_type", [ka.VideoDetail, ka.RankedVideo])
@pytest.mark.parametrize("snapshot", [None, DAY1])
async def test_columns_are_typed_from_the_model(
    postgres_dsn: str, db: Any, table: str, record_type: type[msgspec.Struct],
    snapshot: dt.date | None,
) -> None:
    async with ka.PostgresSink(postgres_dsn, table=table, record_type=record_type,
                               snapshot=snapshot):
        pass
    rows = await db.fetch(
        "SELECT column_name, data_type, udt_name, is_nullable FROM information_schema.columns "
        "WHERE table_name = $1 ORDER BY ordinal_position", table,
    )
    got = {r["column_name"]: r for r in rows}
    fields = [f.name for f in msgspec.structs.fields(record_type)]
    assert list(got) == fields + (["snapshot_date"] if snapshot else [])
    hints = typing.get_type_hints(record_type)
    for name in fields:
        column = got[name]
        if name == "video_products":
            assert (column["data_type"], column["udt_name"]) == ("ARRAY", "_text")
        elif name == "product_category_list":
            assert column["data_type"] == "jsonb"
        else:
            [scalar] = [
                t for t in (typing.get_args(hints[name]) or (hints[name],))
                if t not in (type(None), msgspec.UnsetType)
            ]
            assert column["data_type"] == SCALARS[scalar], name
        assert column["is_nullable"] == ("NO" if name == "video_id" else "YES")
    if snapshot:
        assert got["snapshot_date"]["data_type"] == "date"
    key = {"video_id", "snapshot_date"} if snapshot else {"video_id"}
    for name in (table, table + "_missing"):
        primary = await db.fetch(
            "SELECT k.column_name FROM information_schema.table_constraints c "
            "JOIN information_schema.key_column_usage k USING (constraint_name, table_name) "
            "WHERE c.table_name = $1 AND c.constraint_type = 'PRIMARY KEY'", name,
        )
        assert {r["column_name"] for r in primary} == key


def expected_row(record: msgspec.Struct) -> dict[str, Any]:
    """A record as the row must read back: nested structs as JSON objects, times aware."""
    row: dict[str, Any] = dict.fromkeys(ka.LINEAGE_FIELDS)  # unset: NULL
    row.update(msgspec.to_builtins(record, builtin_types=(dt.datetime,)))
    return row


async def test_every_detail_field_round_trips(postgres_dsn: str, db: Any, table: str) -> None:
    records = await fetch_details(300)
    empty = ka.VideoDetail(video_id="7000000000000000001")  # every other field None
    records.append(empty)
    assert any(r.total_digg_cnt is None for r in records[:-1]), "no -99999 in the sample"
    async with ka.PostgresSink(postgres_dsn, table=table) as sink:
        for i in range(0, len(records), 10):
            await sink.write(records[i:i + 10])
    rows = await stored(db, table)
    assert rows == [expected_row(r) for r in sorted(records, key=lambda r: r.video_id or "")]
    assert all(r["create_time"].tzinfo is not None for r in rows if r["create_time"])
    assert set(rows[[r["video_id"] for r in rows].index(empty.video_id)].values()) == {
        empty.video_id, None
    }


async def test_every_ranking_field_round_trips(postgres_dsn: str, db: Any, table: str) -> None:
    records = await fetch_ranking()
    assert any(r.product_category_list for r in records) and any(r.video_products for r in records)
    records += [
        ka.RankedVideo(video_id="7000000000000000001"),
        ka.RankedVideo(video_id="7000000000000000002", product_category_list=[],
                       video_products=[]),
    ]
    async with ka.PostgresSink(postgres_dsn, table=table, record_type=ka.RankedVideo,
                               snapshot=DAY1) as sink:
        await sink.write(records)
    rows = await stored(db, table)
    for row in rows:
        assert row.pop("snapshot_date") == DAY1
    assert rows == [expected_row(r) for r in sorted(records, key=lambda r: r.video_id or "")]
    # An empty list and "no value" stay different: [] / {} versus NULL.
    by_id = {r["video_id"]: r for r in rows}
    assert by_id["7000000000000000001"]["video_products"] is None
    assert by_id["7000000000000000002"]["video_products"] == []
    assert by_id["7000000000000000002"]["product_category_list"] == []


async def test_upsert_keeps_one_row_with_the_latest_values(
    postgres_dsn: str, db: Any, table: str
) -> None:
    first, other = await fetch_details(2)
    newer = msgspec.structs.replace(first, total_views_cnt=123, region=None)
    newest = msgspec.structs.replace(first, total_views_cnt=456)
    async with ka.PostgresSink(postgres_dsn, table=table) as sink:
        await sink.write([first, other])
        await sink.write([newer])
        rows = await stored(db, table)
        assert len(rows) == 2 and rows == [expected_row(r) for r in sorted(
            [newer, other], key=lambda r: r.video_id or "")]
        # The same id twice in one batch: one row, the later record wins.
        await sink.write([first, newest])
        assert sorted(await all_ids(sink)) == sorted([first.video_id, other.video_id])
    views = await db.fetchval(f'SELECT total_views_cnt FROM "{table}" WHERE video_id = $1',
                              first.video_id)
    assert views == 456 and await db.fetchval(f'SELECT count(*) FROM "{table}"') == 2


async def test_snapshot_mode_keeps_a_row_per_video_and_day(
    postgres_dsn: str, db: Any, table: str
) -> None:
    a, b = await fetch_details(2)
    async with ka.PostgresSink(postgres_dsn, table=table, snapshot=DAY1) as day1:
        await day1.write([a, b])
        await day1.write_missing(["7000000000000000009"])
    later = msgspec.structs.replace(a, total_views_cnt=999)
    async with ka.PostgresSink(postgres_dsn, table=table, snapshot=DAY2.isoformat()) as day2:
        assert await all_ids(day2) == []  # nothing done yet for this day
        await day2.write([later])
        await day2.write([later])  # same id, same day: still one row
        assert await all_ids(day2) == [a.video_id]
    async with ka.PostgresSink(postgres_dsn, table=table, snapshot=DAY1) as again:
        assert sorted(await all_ids(again)) == sorted([a.video_id, b.video_id,
                                                       "7000000000000000009"])
    rows = await db.fetch(f'SELECT video_id, snapshot_date, total_views_cnt FROM "{table}"')
    assert sorted(tuple(r) for r in rows) == sorted([
        (a.video_id, DAY1, a.total_views_cnt), (b.video_id, DAY1, b.total_views_cnt),
        (a.video_id, DAY2, 999),
    ])
    # One table, one mode: a plain sink on a snapshot table (and the reverse) is refused.
    with pytest.raises(ValueError, match="made in snapshot mode"):
        async with ka.PostgresSink(postgres_dsn, table=table):
            pass
    plain = f"{table}_plain"
    try:
        async with ka.PostgresSink(postgres_dsn, table=plain):
            pass
        with pytest.raises(ValueError, match="made without snapshot mode"):
            await ka.PostgresSink(postgres_dsn, table=plain, snapshot=DAY1).open()
    finally:
        await db.execute(f'DROP TABLE IF EXISTS "{plain}", "{plain}_missing"')


def _poison_nul(record: ka.VideoDetail) -> ka.VideoDetail:
    # PostgreSQL text cannot hold NUL: the server rejects the row in the middle of the COPY.
    return msgspec.structs.replace(record, video_desc="bad \x00 text")


def _poison_overflow(record: ka.VideoDetail) -> ka.VideoDetail:
    # Too big for bigint: asyncpg fails to encode the row half way through the COPY stream.
    return msgspec.structs.replace(record, total_views_cnt=2**63)


@pytest.mark.parametrize(
    ("poison", "error"),
    [(_poison_nul, "asyncpg.exceptions.DataError"), (_poison_overflow, "builtins.OverflowError")],
)
async def test_a_batch_that_fails_mid_copy_leaves_none_of_it(
    postgres_dsn: str, db: Any, table: str, poison: Any, error: str
) -> None:
    module, _, name = error.rpartition(".")
    expected = getattr(importlib.import_module(module), name)
    records = await fetch_details(30)
    good, bad, after = records[:10], records[10:20], records[20:]
    bad[5] = poison(bad[5])
    async with ka.PostgresSink(postgres_dsn, table=table) as sink:
        await sink.write(good)
        with pytest.raises(expected):
            await sink.write(bad)
        assert {r["video_id"] for r in await stored(db, table)} == {r.video_id for r in good}
        await sink.write(after)  # the sink goes on, and nothing of the bad batch leaks in
        assert sink.records_written == 20
    ids = {r["video_id"] for r in await stored(db, table)}
    assert ids == {r.video_id for r in good + after}


async def test_a_batch_that_fails_in_the_upsert_leaves_none_of_it(
    postgres_dsn: str, db: Any, table: str
) -> None:
    records = await fetch_details(30)
    async with ka.PostgresSink(postgres_dsn, table=table) as sink:
        await sink.write(records[:10])
        # Staging accepts any value; the target's own constraint refuses one row of 10.
        await db.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT no_42 '
                         "CHECK (total_views_cnt IS DISTINCT FROM 42)")
        bad = records[10:20]
        bad[3] = msgspec.structs.replace(bad[3], total_views_cnt=42)
        with pytest.raises(Exception, match="no_42"):
            await sink.write(bad)
        await sink.write(records[20:])  # the refused batch is not still staged
    ids = {r["video_id"] for r in await stored(db, table)}
    assert ids == {r.video_id for r in records[:10] + records[20:]}


async def test_bad_batches_are_refused_before_the_database(
    postgres_dsn: str, db: Any, table: str
) -> None:
    [record] = await fetch_details(1)
    ranked = ka.RankedVideo(video_id="7000000000000000001")
    async with ka.PostgresSink(postgres_dsn, table=table) as sink:
        with pytest.raises(TypeError, match="stores VideoDetail, got RankedVideo"):
            await sink.write([ranked])
        with pytest.raises(ValueError, match="without video_id"):
            await sink.write([record, ka.VideoDetail(video_id=None)])  # type: ignore[arg-type]
    assert await stored(db, table) == []


async def test_missing_ids_are_recorded_once_and_resumed(
    postgres_dsn: str, db: Any, table: str
) -> None:
    [record] = await fetch_details(1)
    unknown = ["7000000000000000001", "7000000000000000002"]
    async with ka.PostgresSink(postgres_dsn, table=table) as sink:
        await sink.write([record])
        await sink.write_missing(unknown)
        await sink.write_missing(unknown[:1])  # again: no error, no second row
        assert sorted(await all_ids(sink)) == sorted([record.video_id, *unknown])
    rows = await db.fetch(f'SELECT video_id, recorded_at FROM "{table}_missing"')
    assert sorted(r["video_id"] for r in rows) == unknown
    assert all(r["recorded_at"].tzinfo is not None for r in rows)


async def test_resume_ids_streams_every_id_once_in_chunks(
    postgres_dsn: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "RESUME_CHUNK", 7)
    records = await fetch_details(31)
    unknown = [f"70000000000000000{i:02d}" for i in range(15)]
    async with ka.PostgresSink(postgres_dsn, table=table, snapshot=DAY1) as sink:
        await sink.write(records)
        await sink.write_missing(unknown)
        ids = await all_ids(sink)
    assert len(ids) == len(set(ids)) == 46
    assert set(ids) == {r.video_id for r in records} | set(unknown)


async def test_a_lost_connection_is_reopened_and_the_batch_sent_again(
    postgres_dsn: str, db: Any, table: str
) -> None:
    records = await fetch_details(20)
    name = f"keyapi-test-{uuid.uuid4().hex[:8]}"
    sink = ka.PostgresSink(postgres_dsn, table=table,
                           connect_kwargs={"server_settings": {"application_name": name}})
    async with sink:
        await sink.write(records[:10])
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1", name,
        )
        assert killed == 1
        await sink.write(records[10:])
        assert await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
        ) == 1
    assert {r["video_id"] for r in await stored(db, table)} == {r.video_id for r in records}


async def test_an_existing_table_is_checked_and_given_new_columns(
    postgres_dsn: str, db: Any, table: str
) -> None:
    records = await fetch_details(2)
    async with ka.PostgresSink(postgres_dsn, table=table) as sink:
        await sink.write(records[:1])
    # An older table, made before a field existed: the column is added, old rows stay.
    await db.execute(f'ALTER TABLE "{table}" DROP COLUMN total_digg_30d_cnt')
    async with ka.PostgresSink(postgres_dsn, table=table) as sink:
        await sink.write(records[1:])
    rows = await stored(db, table)
    assert [r["video_id"] for r in rows] == sorted(r.video_id or "" for r in records)
    fresh = {r["video_id"]: r for r in rows}[records[1].video_id]
    assert fresh["total_digg_30d_cnt"] == records[1].total_digg_30d_cnt
    # A column of another type is refused, naming it.
    await db.execute(f'ALTER TABLE "{table}" ALTER COLUMN duration TYPE text')
    with pytest.raises(ValueError, match="duration is text, expected bigint"):
        await ka.PostgresSink(postgres_dsn, table=table).open()
    other = f"{table}_nokey"
    try:
        await db.execute(f'CREATE TABLE "{other}" (video_id text)')
        with pytest.raises(ValueError, match=r"no unique key on \(video_id\)"):
            await ka.PostgresSink(postgres_dsn, table=other).open()
    finally:
        await db.execute(f'DROP TABLE IF EXISTS "{other}", "{other}_missing"')


async def test_a_closed_sink_refuses_writes(postgres_dsn: str, table: str) -> None:
    [record] = await fetch_details(1)
    sink = ka.PostgresSink(postgres_dsn, table=table)
    await sink.write([record])  # connects on first use
    await sink.close()
    await sink.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await sink.write([record])


async def test_the_staging_table_is_truncated_between_batches(
    postgres_dsn: str, db: Any, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "STAGE_TRUNCATE_ROWS", 25)
    records = await fetch_details(100)
    async with ka.PostgresSink(postgres_dsn, table=table) as sink:
        for i in range(0, 100, 10):
            await sink.write(records[i:i + 10])
            assert sink._staged < 25 + 10  # truncated once it reached the threshold
    assert {r["video_id"] for r in await stored(db, table)} == {r.video_id for r in records}
