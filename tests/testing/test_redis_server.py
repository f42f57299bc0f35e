"""The throwaway redis-server helper (tests/redis and benchmarks/redis_workers share it):
ready means it answers as itself (INFO names its process), and the process is gone after
the block however it ends."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from keyapi_async.testing import _redis_server
from keyapi_async.testing._redis_server import (
    RedisServerUnavailable,
    find_redis_server,
    redis_server,
)

needs_redis = pytest.mark.skipif(
    find_redis_server() is None, reason="redis-server not on PATH nor in /usr/bin"
)


def ping(url: str) -> bytes:
    host, port = url.removeprefix("redis://").removesuffix("/0").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16)


@needs_redis
def test_ready_on_a_loopback_port_and_stopped_after(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        assert server.url.startswith("redis://127.0.0.1:")
        assert ping(server.url) == b"+PONG\r\n"  # no waiting: ready when yielded
        assert server.process.poll() is None
    assert server.process.poll() is not None
    assert not any(tmp_path.iterdir())  # nothing persisted


@needs_redis
def test_stopped_when_the_block_raises() -> None:
    with pytest.raises(KeyError), redis_server() as server:
        raise KeyError("the test failed")
    assert server.process.poll() is not None


@needs_redis
def test_two_servers_get_different_ports() -> None:
    with redis_server() as one, redis_server() as two:
        assert one.url != two.url
        assert ping(one.url) == ping(two.url) == b"+PONG\r\n"


def test_no_binary_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_redis_server, "_FALLBACK", str(tmp_path / "redis-server"))
    assert find_redis_server() is None
    with pytest.raises(RedisServerUnavailable, match="redis-server not found"), redis_server():
        pass


def test_found_in_usr_bin_when_not_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(_redis_server, "_FALLBACK", str(fake))
    assert find_redis_server() == str(fake)


@needs_redis
def test_a_server_that_is_not_ours_is_not_taken_for_ours(tmp_path: Path) -> None:
    """Readiness asks the server its process id: a redis that someone else started on the
    port (the race between picking a free port and binding it) is not handed out."""
    with redis_server(tmp_path) as server:
        port = int(server.url.removeprefix("redis://").removesuffix("/0").split(":")[1])
        assert _redis_server._answers_as(port, server.process.pid)
        assert not _redis_server._answers_as(port, server.process.pid + 1)
