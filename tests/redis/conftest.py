"""A real redis-server for the Redis limiter tests, and limiters on unique names.

Uses ``KEYAPI_TEST_REDIS_URL`` when set (``.ci/redis.sh start`` prints it); otherwise
starts a throwaway redis-server on a free 127.0.0.1 port if one is on PATH; otherwise
every test here is skipped, saying why. No ``__init__.py`` here on purpose: a package
named ``redis`` under tests/ (on pythonpath) would shadow redis-py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis", reason="redis-py not installed: pip install 'keyapi-async[redis]'")

from keyapi_async.limiting.redis import RedisRateLimiter

NO_REDIS = (
    "no Redis for the shared-limiter tests: redis-server is not on PATH and "
    "KEYAPI_TEST_REDIS_URL is unset (run .ci/redis.sh start, or apt-get install redis-server)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def start_redis(directory: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run redis-server on a free port with no persistence; yield (url, process)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip(NO_REDIS)
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # readiness: bounded wait for the port to accept connections
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
