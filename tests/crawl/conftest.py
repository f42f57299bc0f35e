"""Fixtures for the crawl tests: fake servers (in-process and as a subprocess) and readers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from crawl_helpers import cli, cli_env, jsonl_ids, requested_ids, wait_for
from server_process import ServerProcess

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

FAST = ka.RetryPolicy(base_delay=0.001, max_delay=0.01)


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


@pytest.fixture
def spawn_server() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def spawn(*args: str) -> ServerProcess:
        started.append(ServerProcess(*args))
        return started[-1]

    yield spawn
    for server_process in started:
        server_process.stop()


@pytest.fixture
def helpers() -> Any:
    """tests/crawl_helpers.py's functions, as a fixture (the older spelling here)."""

    class Helpers:
        jsonl_ids = staticmethod(jsonl_ids)
        requested_ids = staticmethod(requested_ids)
        cli = staticmethod(cli)
        cli_env = staticmethod(cli_env)
        wait_for = staticmethod(wait_for)

    return Helpers
