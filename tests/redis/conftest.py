"""A real redis-server for the Redis limiter tests, and limiters on unique names.

Uses ``KEYAPI_TEST_REDIS_URL`` when set (``.ci/redis.sh start`` prints it); otherwise
starts a throwaway redis-server on a free 127.0.0.1 port if one is on PATH; otherwise
every test here is skipped, saying why. No ``__init__.py`` here on purpose: a package
named ``redis`` under tests/ (on pythonpath) would shadow redis-py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis", reason="redis-py not installed: pip install 'keyapi-async[redis]'")

from keyapi_async.limiting.redis import RedisRateLimiter
from keyapi_async.testing._redis_server import find_redis_server, redis_server

NO_REDIS = (
    "no Redis for the shared-limiter tests: redis-server is not on PATH nor in /usr/bin and "
    "KEYAPI_TEST_REDIS_URL is unset (run .ci/redis.sh start, or apt-get install redis-server)"
)


@contextlib.contextmanager
def start_redis(directory: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a throwaway redis-server in ``directory``; yield (url, process). Skips without one."""
    if find_redis_server() is None:
        pytest.skip(NO_REDIS)
    with redis_server(directory) as server:
        yield server.url, server.process


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a running Redis (shared by the session; tests use unique names)."""
    url = os.environ.get("KEYAPI_TEST_REDIS_URL")
    if url:
        yield url
        return
    with start_redis(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url


@pytest.fixture
async def make_limiter(redis_url: str) -> AsyncIterator[Callable[..., RedisRateLimiter]]:
    """``make_limiter(qps, name=None, **kw)``: a limiter (closed after the test).

    Without ``name`` each call gets a fresh unique one; pass the same name to share.
    """
    made: list[RedisRateLimiter] = []

    def make(qps: float, name: str | None = None, **kwargs: Any) -> RedisRateLimiter:
        limiter = RedisRateLimiter(
            redis_url, name=name or f"test-{uuid.uuid4().hex}", qps=qps, **kwargs
        )
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own, to stop mid-test: (url, process)."""
    with start_redis(tmp_path) as started:
        yield started
