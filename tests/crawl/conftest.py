"""Fixtures for the crawl tests: fake servers (in-process and as a subprocess) and readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server_process import ServerProcess

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

FAST = ka.RetryPolicy(base_delay=0.001, max_delay=0.01)
DETAIL = "/v1/tiktok/video/detail/analytics"
RANKING = "/v1/tiktok/video/ranking/analytics"


@pytest.fixture
async def server() -> AsyncIterator[FakeKeyAPI]:
    """An in-process fake server with a little latency (so requests overlap)."""
    async with FakeKeyAPI(latency=0.005, jitter=0.004) as fake:
        yield fake


@pytest.fixture
def make_client() -> Callable[..., ka.KeyAPIClient]:
    def make(fake: FakeKeyAPI, **kwargs: Any) -> ka.KeyAPIClient:
        kwargs.setdefault("qps", 2000)
        kwargs.setdefault("retry_policy", FAST)
        return ka.KeyAPIClient("test-key", base_url=fake.url, **kwargs)

    return make


def jsonl_ids(path: Path) -> list[str]:
    """The video_id of every line (asserting each line is complete JSON)."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "torn last line"
    return [json.loads(line)["video_id"] for line in data.splitlines()]


def requested_ids(records: list[dict[str, Any]] | list[Any]) -> list[str]:
    """Every id sent in detail requests of a request log (server.requests or the JSON log)."""
    out: list[str] = []
    for record in records:
        path = record["path"] if isinstance(record, dict) else record.path
        params = record["params"] if isinstance(record, dict) else record.params
        if path == DETAIL:
            out.extend(params["video_ids"].split(","))
    return out


@pytest.fixture
def spawn_server() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def spawn(*args: str) -> ServerProcess:
        started.append(ServerProcess(*args))
        return started[-1]

    yield spawn
    for server_process in started:
        server_process.stop()


def cli_env(key: str = "test-key") -> dict[str, str]:
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


@pytest.fixture
def helpers() -> Any:
    """The module-level helpers above, for test modules (they cannot import conftest)."""

    class Helpers:
        jsonl_ids = staticmethod(jsonl_ids)
        requested_ids = staticmethod(requested_ids)
        cli = staticmethod(cli)
        cli_env = staticmethod(cli_env)
        wait_for = staticmethod(wait_for)

    return Helpers
