"""The key never appears anywhere: logs at DEBUG, reprs, errors, tracebacks, files, reports."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest
from conftest import API_KEY

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

pytestmark = pytest.mark.reliability


def every_file_text(root: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()
    )


@pytest.mark.parametrize("sink", ["jsonl", "csv", "parquet"])
async def test_a_crawl_that_fails_and_aborts_leaks_the_key_nowhere(
    sink: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level, aiohttp's included
    out = tmp_path / f"out.{sink}"
    make_sink = {"jsonl": ka.JsonlSink, "csv": ka.CsvSink, "parquet": ka.ParquetSink}[sink]
    faults = Faults(http_5xx=0.2, reset=0.05, truncated=0.05, revoke_after=12)
    async with (
        FakeKeyAPI(api_keys={API_KEY: None}, faults=faults, seed=5) as server,
        ka.KeyAPIClient(
            API_KEY,
            base_url=server.url,
            qps=500,
            max_retries=1,
            retry_policy=ka.RetryPolicy(base_delay=0.001),
        ) as client,
    ):
        with pytest.raises(ka.AuthenticationError) as info:
            await ka.crawl_video_details(client, server.make_ids(400), make_sink(out))
        exposed = [repr(client), str(client), repr(client.stats), repr(vars(client))]
    report = info.value.report  # type: ignore[attr-defined]
    assert report.fetched > 0 and report.failed  # the crawl really did work and fail
    exposed += [
        str(info.value),
        repr(info.value),
        "".join(traceback.format_exception(info.value)),
        repr(report),
        str(report.to_dict()),
        caplog.text,
        every_file_text(tmp_path),
    ]
    for text in exposed:
        assert API_KEY not in text
    assert "Bearer" not in caplog.text
