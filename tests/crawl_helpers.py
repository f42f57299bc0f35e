"""Helpers for tests that crawl a fake server, in process or through the CLI: which ids
a crawl asked for, which ids an output holds, the CLI's environment, bounded polling.

A plain module on the tests' pythonpath (like server_process.py), so any test directory
imports it; tests/crawl's ``helpers`` fixture hands out the same functions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DETAIL = "/v1/tiktok/video/detail/analytics"


def requested_ids(records: list[dict[str, Any]] | list[Any]) -> list[str]:
    """Every id sent in the detail requests of a request log, in order.

    ``records`` is ``FakeKeyAPI.requests`` (RequestRecords) or ``ServerProcess.requests()``
    (the subprocess's JSON log, dicts).
    """
    out: list[str] = []
    for record in records:
        path = record["path"] if isinstance(record, dict) else record.path
        params = record["params"] if isinstance(record, dict) else record.params
        if path == DETAIL:
            out.extend(params["video_ids"].split(","))
    return out


def jsonl_ids(path: Path) -> list[str]:
    """The video_id of every line (asserting each line is complete JSON)."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "torn last line"
    return [json.loads(line)["video_id"] for line in data.splitlines()]


def cli_env(key: str = "test-key") -> dict[str, str]:
    """This environment with ``key`` as KEYAPI_API_KEY and no KEYAPI_BASE_URL."""
    env = dict(os.environ)
    env["KEYAPI_API_KEY"] = key
    env.pop("KEYAPI_BASE_URL", None)
    return env


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m keyapi_async ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "keyapi_async", *args], env=env or cli_env(),
        capture_output=True, text=True, timeout=60, input=stdin,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` until true (bounded): synchronization on observable progress."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
