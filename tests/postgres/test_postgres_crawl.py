"""Real crawls (``ka.crawl_video_details`` against FakeKeyAPI) into a PostgresSink:
exactly once, resume, snapshots, and a crawler killed with SIGKILL then resumed.

The request log of the fake server is the witness: an id stored or recorded missing must
never be requested again, and every id must end in the table or in ``<table>_missing``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

DETAIL = "/v1/tiktok/video/detail/analytics"
SCRIPT = Path(__file__).with_name("pg_crawl.py")
N_IDS = 2000
# Kill points, as rows committed before the SIGKILL: seeded, so a failure reproduces.
KILL_POINTS = [random.Random(seed).randint(1, 1400) for seed in range(3)]


def asked(log: list[Any]) -> list[list[str]]:
    """The ids of each detail request in a request log, one list per request."""
    return [r.params["video_ids"].split(",") for r in log if r.path == DETAIL]


def flat(batches: list[list[str]]) -> list[str]:
    return [vid for batch in batches for vid in batch]


async def ids_in(db: Any, table: str) -> list[str]:
    if await db.fetchval("SELECT to_regclass($1)", f'"{table}"') is None:
        return []
    return [r[0] for r in await db.fetch(f'SELECT video_id FROM "{table}"')]


def client(fake: FakeKeyAPI, **kwargs: Any) -> ka.KeyAPIClient:
    return ka.KeyAPIClient("test-key", base_url=fake.url, qps=5000,
                           retry_policy=ka.RetryPolicy(base_delay=0.001, max_delay=0.01),
                           **kwargs)


async def test_crawl_stores_every_id_once_and_resumes_without_requests(
    postgres_dsn: str, db: Any, table: str
) -> None:
    async with FakeKeyAPI(latency=0.002, jitter=0.002) as fake:
        ids = fake.make_ids(400)
        known = {i for i in ids if fake.is_known(i)}
        async with client(fake) as c:
            report = await ka.crawl_video_details(
                c, ids + ids[::7], ka.PostgresSink(postgres_dsn, table=table)
            )
        assert report.ok and report.requested == 400
        assert (report.fetched, report.missing) == (len(known), 400 - len(known))
        stored = await ids_in(db, table)
        assert sorted(stored) == sorted(known)
        assert set(await ids_in(db, table + "_missing")) == set(ids) - known
        first = flat(asked(fake.requests))
        assert sorted(first) == sorted(ids), "an id was requested twice or not at all"

        fake.reset_counters()
        async with client(fake) as c:
            again = await ka.crawl_video_details(c, ids, ka.PostgresSink(postgres_dsn,
                                                                         table=table))
        assert fake.requests == [] and again.skipped_resumed == 400 and again.ok

        # resume=False asks for everything again and upserts: still one row per id.
        async with client(fake) as c:
            fresh = await ka.crawl_video_details(
                c, ids, ka.PostgresSink(postgres_dsn, table=table), resume=False
            )
        assert fresh.fetched == len(known) and fresh.skipped_resumed == 0
        assert sorted(await ids_in(db, table)) == sorted(known)


async def test_snapshot_crawls_resume_within_their_day(
    postgres_dsn: str, db: Any, table: str
) -> None:
    day1, day2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
    async with FakeKeyAPI() as fake:
        ids = fake.make_ids(120)
        known = {i for i in ids if fake.is_known(i)}
        async with client(fake) as c:
            await ka.crawl_video_details(
                c, ids[:60], ka.PostgresSink(postgres_dsn, table=table, snapshot=day1))
            fake.reset_counters()
            # Same day, the whole list: only the 60 not done yet are asked.
            rest = await ka.crawl_video_details(
                c, ids, ka.PostgresSink(postgres_dsn, table=table, snapshot=day1))
            assert sorted(flat(asked(fake.requests))) == sorted(ids[60:])
            assert rest.skipped_resumed == 60
            fake.reset_counters()
            # The next day starts from nothing.
            await ka.crawl_video_details(
                c, ids, ka.PostgresSink(postgres_dsn, table=table, snapshot=day2))
            assert sorted(flat(asked(fake.requests))) == sorted(ids)
    rows = await db.fetch(f'SELECT snapshot_date, count(*) FROM "{table}" GROUP BY 1')
    assert dict((r[0], r[1]) for r in rows) == {day1: len(known), day2: len(known)}


async def _run_crawl(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def _wait_for_rows(db: Any, table: str, count: int, proc: Any) -> None:
    """Poll the table until it holds ``count`` rows (bounded): progress, not a timer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while len(await ids_in(db, table)) < count:
        if proc.returncode is not None or loop.time() > deadline:
            raise AssertionError(f"the crawl did not reach {count} rows")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("point", KILL_POINTS)
async def test_sigkilled_crawl_resumes_exactly_once(
    postgres_dsn: str, db: Any, table: str, tmp_path: Path, point: int
) -> None:
    async with FakeKeyAPI(latency=0.02, jitter=0.01) as fake:
        ids = fake.make_ids(N_IDS)
        known = {i for i in ids if fake.is_known(i)}
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        args = (fake.url, postgres_dsn, table, str(ids_file))

        proc = await _run_crawl(*args)
        try:
            await _wait_for_rows(db, table, point, proc)
            proc.send_signal(signal.SIGKILL)
            await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        stored1 = set(await ids_in(db, table))
        missing1 = set(await ids_in(db, table + "_missing"))
        first = asked(fake.requests)
        assert point <= len(stored1) < len(known), "the kill did not land mid-crawl"
        # No half batch: of each request's known ids, all are stored or none is.
        for batch in first:
            wanted = {vid for vid in batch if vid in known}
            assert wanted & stored1 in (set(), wanted), "a batch was stored in part"

        fake.reset_counters()
        resumed = await _run_crawl(*args)
        _, err = await asyncio.wait_for(resumed.communicate(), 120)
        assert resumed.returncode == 0, err.decode()
        second = flat(asked(fake.requests))
        assert len(second) == len(set(second)), "an id was requested twice in the resume"
        assert not set(second) & stored1, "an id already stored was requested again"
        assert not set(second) & missing1, "an id known missing was requested again"
        assert set(second) | stored1 | missing1 == set(ids)
        # Only answers lost to the kill (in flight, or paid but not committed) are re-asked.
        assert set(second) & set(flat(first)) <= set(ids) - stored1 - missing1

    final = await ids_in(db, table)
    assert len(final) == len(set(final)) and set(final) == known
    assert set(await ids_in(db, table + "_missing")) == set(ids) - known


async def test_a_ranking_list_crawls_into_a_table(postgres_dsn: str, db: Any, table: str) -> None:
    query = {"date": "2024-05-01", "region": "US", "video_rank_field": 2, "rank_type": 1}
    async with FakeKeyAPI(ranking_length=95) as fake, client(fake) as c:
        expected = [v async for v in c.iter_video_ranking(**query)]
        sink = ka.PostgresSink(postgres_dsn, table=table, record_type=ka.RankedVideo,
                               snapshot=query["date"])
        report = await ka.crawl_video_ranking(c, sink, **query)
    assert report.complete and report.fetched == len(expected) == 95
    rows = await db.fetch(f'SELECT video_id, video_products FROM "{table}"')
    assert {r["video_id"]: r["video_products"] for r in rows} == {
        v.video_id: v.video_products for v in expected
    }


@pytest.mark.parametrize("lineage", [True, False])
async def test_lineage_columns_present_or_absent(
    postgres_dsn: str, db: Any, table: str, lineage: bool
) -> None:
    async with FakeKeyAPI() as fake:
        ids = fake.make_ids(25, known=True)
        async with client(fake) as c:
            await ka.crawl_video_details(
                c, ids, ka.PostgresSink(postgres_dsn, table=table, lineage=lineage),
                lineage=lineage,
            )
    columns = {
        r[0] for r in await db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table
        )
    }
    assert ("fetched_at" in columns, "request_id" in columns) == (lineage, lineage)
    if lineage:
        rows = await db.fetch(f'SELECT fetched_at, request_id FROM "{table}"')
        assert len(rows) == 25
        assert all(r["fetched_at"].tzinfo is not None and r["request_id"] for r in rows)
        assert len({r["request_id"] for r in rows}) == 3  # one per answer of up to 10


async def test_a_crawl_without_lineage_into_a_lineage_table_stores_nulls(
    postgres_dsn: str, db: Any, table: str
) -> None:
    async with FakeKeyAPI() as fake:
        ids = fake.make_ids(5, known=True)
        async with client(fake) as c:
            await ka.crawl_video_details(
                c, ids, ka.PostgresSink(postgres_dsn, table=table), lineage=False
            )
    rows = await db.fetch(f'SELECT fetched_at, request_id FROM "{table}"')
    assert [tuple(r) for r in rows] == [(None, None)] * 5
