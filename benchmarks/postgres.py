"""PostgreSQL sink: records/s into ``PostgresSink`` against ``JsonlSink``, same records, same run.

1. **The sink alone.** N ``VideoDetail`` records (decoded once from the fake server's
   generator) are written in batches of 10, which is what a crawl hands a sink (one
   detail answer, or one ranking page, per write), to ``JsonlSink`` (default
   ``fsync_interval=1.0``), ``PostgresSink`` (default: commits do not wait for the WAL
   flush, the same bound as JSONL's 1 s fsync) and ``PostgresSink(synchronous_commit=True)``
   (every batch waits for its WAL flush). Interleaved round by round, each round into a
   fresh file or table; records/s = records / (the writes + close). Target: PostgresSink
   >= 10,000 records/s, i.e. not the bottleneck of a crawl at qps 1000 (10 ids a request).
2. **A crawl at qps 1000.** ``crawl_video_details`` of the same ids (not ``--quick``)
   against a fake server with no limit and 5 +- 2 ms latency in its own process, once
   into JSONL and once into PostgreSQL: wall time against the floor (requests / qps).

Needs a PostgreSQL server: ``KEYAPI_TEST_POSTGRES_DSN`` (``.ci/postgres.sh start``), or a
throwaway cluster started with that script when Debian's binaries are installed.
Run alone: ``python -m benchmarks.postgres [--quick] [--dsn DSN]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

import keyapi_async as ka
from keyapi_async.testing.data import SyntheticData

from .harness import API_KEY, SectionResult, fake_server, interleave, medians, print_table

TITLE = "PostgreSQL sink: records/s vs JSONL"
REPO = Path(__file__).resolve().parents[1]
BATCH = 10
TARGET = 10_000.0
CRAWL_QPS = 1000


def available() -> str | None:
    """Why the section cannot run, or None when it can."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg not installed (pip install -e '.[postgres]')"
    if os.environ.get("KEYAPI_TEST_POSTGRES_DSN"):
        return None
    if glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb"):
        return None
    return "no PostgreSQL (set KEYAPI_TEST_POSTGRES_DSN or install Debian's postgresql)"


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """KEYAPI_TEST_POSTGRES_DSN, or a throwaway cluster from .ci/postgres.sh; yields a DSN."""
    dsn = os.environ.get("KEYAPI_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="keyapi-async-pg-bench-")
    env = {**os.environ, "PG_PORT": str(port), "PG_DIR": directory}
    script = ["bash", str(REPO / ".ci" / "postgres.sh")]
    try:
        started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True,
                                 timeout=120, check=True)
        yield started.stdout.strip().splitlines()[-1].partition("=")[2]
    finally:
        subprocess.run([*script, "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


def make_records(n: int) -> list[ka.VideoDetail]:
    """``n`` records from the fake server's generator, decoded by the SDK's models."""
    data = SyntheticData(seed=0, known_ratio=1.0, ranking_length=0)
    raw = b"[" + b",".join(data.detail_entry(v).raw for v in data.make_ids(n)) + b"]"
    return msgspec.json.Decoder(list[ka.VideoDetail], strict=False).decode(raw)


async def _fill(sink: Any, records: list[ka.VideoDetail]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(records), BATCH):
        await sink.write(records[i:i + BATCH])
    await sink.close()
    return time.perf_counter() - t0


class _Tables:
    """Fresh table names, dropped at the end."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.made: list[str] = []

    def new(self) -> str:
        self.made.append(f"bench_{uuid.uuid4().hex[:10]}")
        return self.made[-1]

    async def drop(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            for name in self.made:
                await conn.execute(f'DROP TABLE IF EXISTS "{name}", "{name}_missing"')
        finally:
            await conn.close()


def _sink_rates(dsn: str, records: list[ka.VideoDetail], rounds: int, tmp: Path,
                tables: _Tables) -> dict[str, dict[str, list[float]]]:
    loop = asyncio.new_event_loop()

    def jsonl() -> dict[str, float]:
        out = tmp / f"{uuid.uuid4().hex}.jsonl"
        seconds = loop.run_until_complete(_fill(ka.JsonlSink(out), records))
        out.unlink()
        return {"records_per_s": len(records) / seconds}

    def pg(synchronous_commit: bool) -> dict[str, float]:
        sink = ka.PostgresSink(dsn, table=tables.new(), synchronous_commit=synchronous_commit)
        loop.run_until_complete(sink.open())  # creating the table is not timed
        return {"records_per_s": len(records) / loop.run_until_complete(_fill(sink, records))}

    try:
        return interleave({
            "jsonl": jsonl,
            "postgres": lambda: pg(False),
            "postgres_sync": lambda: pg(True),
        }, rounds)
    finally:
        loop.close()


async def _crawl(url: str, ids: list[str], sink: Any) -> tuple[float, ka.CrawlReport]:
    t0 = time.perf_counter()
    async with ka.KeyAPIClient(API_KEY, base_url=url, qps=CRAWL_QPS,
                               max_concurrency=None) as client:
        report = await ka.crawl_video_details(client, ids, sink)
    return time.perf_counter() - t0, report


def run(quick: bool, dsn: str | None = None) -> SectionResult:
    """Part 1 always; part 2 unless ``quick``."""
    result = SectionResult(TITLE)
    n = 2_000 if quick else 20_000
    rounds = 2 if quick else 4
    records = make_records(n)
    with contextlib.ExitStack() as stack:
        dsn = dsn or stack.enter_context(postgres())
        tables = _Tables(dsn)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        try:
            samples = _sink_rates(dsn, records, rounds, tmp, tables)
            med = medians(samples)
            crawl: dict[str, Any] = {}
            if not quick:
                ids = SyntheticData(seed=0, known_ratio=0.9, ranking_length=0).make_ids(n)
                args = ("--latency", "0.005", "--jitter", "0.002")
                with fake_server(*args) as server:
                    for name, sink in (
                        ("jsonl", ka.JsonlSink(tmp / "crawl.jsonl")),
                        ("postgres", ka.PostgresSink(dsn, table=tables.new())),
                    ):
                        wall, report = asyncio.run(_crawl(server.url, ids, sink))
                        crawl[name] = {"wall_s": wall, "report": report.to_dict()}
        finally:
            asyncio.run(tables.drop())
    jsonl, pg, pg_sync = (med[k]["records_per_s"] for k in ("jsonl", "postgres", "postgres_sync"))
    result.raw = {"records": n, "batch": BATCH, "rounds": rounds, "samples": samples,
                  "crawl": crawl}
    result.add("JSONL sink (fsync_interval=1.0)", jsonl, "records/s")
    result.add("PostgresSink (default)", pg, "records/s", target=f">= {TARGET:,.0f}",
               ok=pg >= TARGET, note=f"{pg / jsonl:.3f}x JSONL")
    result.add("PostgresSink(synchronous_commit=True)", pg_sync, "records/s",
               note="every batch waits for the server's WAL flush (fdatasync)")
    if crawl:
        floor = math.ceil(n / 10) / CRAWL_QPS
        for name in ("jsonl", "postgres"):
            wall = crawl[name]["wall_s"]
            report = crawl[name]["report"]
            result.add(f"crawl at qps {CRAWL_QPS} into {name}: wall / floor", wall / floor, "x",
                       note=f"{wall:.2f} s, floor {floor:g} s, fetched {report['fetched']}, "
                       f"ok {report['ok']}")
        ratio = crawl["postgres"]["wall_s"] / crawl["jsonl"]["wall_s"]
        result.add("crawl wall: PostgreSQL / JSONL", ratio, "x",
                   note="1.0x: the sink is not what limits the crawl")
    result.notes.append(
        f"{n:,} VideoDetail records in batches of {BATCH}, medians of {rounds} interleaved "
        "rounds, each into a fresh file / table; PostgreSQL on 127.0.0.1 (TCP), same machine"
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.postgres", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dsn", help="a PostgreSQL DSN (default: KEYAPI_TEST_POSTGRES_DSN or "
                        "a throwaway cluster)")
    args = parser.parse_args(argv)
    print_table(run(args.quick, args.dsn))


if __name__ == "__main__":
    main()
