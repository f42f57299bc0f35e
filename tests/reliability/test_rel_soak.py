"""A bounded soak: 50,000 ids through a crawl with 10 % mixed faults, flat memory.

Marked slow: not in the default test run; `python -m benchmarks` runs it. The fake server
runs in its own process, so the client's memory is measured alone.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from server_process import ServerProcess

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

N_IDS = 50_000
FAULTS = {
    "http_5xx": 0.03,
    "body_429": 0.02,
    "reset": 0.01,
    "truncated": 0.01,
    "html_502": 0.01,
    "control_chars": 0.01,
    "real_arrays": 0.01,
}  # ~10 % of answers


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture
def server_url() -> Iterator[str]:
    args = ["--seed", "99", "--latency", "0.005", "--jitter", "0.005"]
    for name, rate in FAULTS.items():
        args += ["--fault", f"{name}={rate}"]
    with ServerProcess(*args) as server:
        yield server.url


async def test_soak_50k_ids_with_mixed_faults(server_url: str, tmp_path: Path) -> None:
    out = tmp_path / "soak.jsonl"
    oracle = FakeKeyAPI(seed=99)  # not started: the same seed says which ids exist
    ids = oracle.make_ids(N_IDS)
    rss: list[float] = []

    def sample(report: ka.CrawlReport) -> None:
        rss.append(peak_rss_mb())

    async with ka.KeyAPIClient(
        "test-key",
        base_url=server_url,
        qps=2000,
        max_retries=6,
        retry_policy=ka.RetryPolicy(base_delay=0.002),
    ) as client:
        report = await ka.crawl_video_details(
            client, iter(ids), ka.JsonlSink(out), on_progress=sample
        )
    async with aiohttp.ClientSession() as session, session.get(server_url + "/_fake/stats") as resp:
        stats = await resp.json()
    written = [json.loads(line)["video_id"] for line in out.read_text().splitlines()]
    assert len(written) == len(set(written)) == report.fetched
    assert report.fetched + report.missing + len(report.failed) + report.not_attempted == N_IDS
    assert set(written) | set(report.failed) >= {i for i in ids if oracle.is_known(i)}
    # Flat memory: the second half of the crawl adds little to the first half's peak.
    assert rss[-1] <= rss[len(rss) // 2] * 1.2
    print(
        f"\n[soak] ids={N_IDS} fetched={report.fetched} missing={report.missing} "
        f"failed={len(report.failed)} requests={stats['requests']} retries={report.retries} "
        f"faults={sum(stats['faults_injected'].values())} peak_rss_mb={rss[-1]:.0f} "
        f"mid_rss_mb={rss[len(rss) // 2]:.0f} lost=0"
    )
