"""Section 4: a bulk crawl to JSONL at a fixed qps, against its floors.

``ka.crawl_video_details(client, ids, ka.JsonlSink(path))`` with 20,000 unique ids (plus
repeats, which must cost nothing) at qps 100 against a strict sliding-window server with
50 +- 10 ms latency in its own process. Floors: 2,000 requests can take no less than
2,000 / 100 = 20 s, and cost no less than ceil(unique ids / 10) credits.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import keyapi_async as ka
from keyapi_async.testing.data import SyntheticData

from .harness import API_KEY, SectionResult, fake_server

TITLE = "4. Bulk crawl to JSONL (qps 100)"
QPS = 100
#: Every REPEAT_EVERY-th id is sent twice: duplicates must not cost a credit.
REPEAT_EVERY = 20


def with_repeats(ids: Sequence[str]) -> Iterator[str]:
    """The ids in order, every ``REPEAT_EVERY``-th one twice (lazily: a generator)."""
    for i, vid in enumerate(ids):
        yield vid
        if i % REPEAT_EVERY == 0:
            yield vid


async def _crawl(url: str, ids: Sequence[str], out: Path) -> ka.CrawlReport:
    async with ka.KeyAPIClient(API_KEY, base_url=url, qps=QPS, max_concurrency=None) as client:
        return await ka.crawl_video_details(client, with_repeats(ids), ka.JsonlSink(out))


def run(quick: bool) -> SectionResult:
    """One crawl (wall time is its own interleaving-free measurement: a floor, not a rival)."""
    result = SectionResult(TITLE)
    unique = 1_000 if quick else 20_000
    ids = SyntheticData(seed=0, known_ratio=0.9, ranking_length=0).make_ids(unique)
    floor_credits = math.ceil(unique / 10)
    floor_wall = floor_credits / QPS
    args = ("--qps", str(QPS), "--qps-mode", "sliding", "--latency", "0.05", "--jitter", "0.01")
    with tempfile.TemporaryDirectory() as tmp, fake_server(*args) as server:
        out = Path(tmp) / "videos.jsonl"
        t0 = time.perf_counter()
        report = asyncio.run(asyncio.wait_for(_crawl(server.url, ids, out), floor_wall * 3 + 30))
        wall = time.perf_counter() - t0
        stats = server.stats(API_KEY)
        lines = sum(1 for _ in out.open("rb"))
    credits = int(stats["credits_spent"])
    limited = int(stats["by_status"].get("429", 0))
    accounted = report.fetched + report.missing
    result.raw = {
        "unique_ids": unique, "inputs": unique + math.ceil(unique / REPEAT_EVERY),
        "wall_s": wall, "floor_s": floor_wall, "credits": credits,
        "floor_credits": floor_credits, "server": stats, "report": report.to_dict(),
        "jsonl_lines": lines,
    }
    result.add("wall time", wall, "s", note=f"floor {floor_wall:g} s")
    result.add("wall / floor", wall / floor_wall, "x", target="<= 1.05x",
               ok=wall / floor_wall <= 1.05)
    result.add("credits spent (server)", credits, "credits", target=f"== {floor_credits}",
               ok=credits == floor_credits)
    result.add("429 answers", limited, "count")
    result.add("ids accounted (fetched + missing)", accounted, "ids", target=f"== {unique}",
               ok=accounted == unique and report.ok and lines == report.fetched)
    result.notes.append(
        f"{unique} unique ids (+ every {REPEAT_EVERY}th sent twice) from a generator, "
        f"KeyAPIClient(qps={QPS}, max_concurrency=None), server sliding window qps {QPS}, "
        "latency 50±10 ms; wall includes client start-up and closing the sink"
    )
    return result
