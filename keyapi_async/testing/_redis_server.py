"""A throwaway redis-server for tests and benchmarks (tests/redis, benchmarks/redis_workers),
and :func:`record_slots`, what shows that RedisRateLimiters shared one schedule.

Guarantee: :func:`redis_server` yields only once the server answered as itself (``INFO``
names its process) on a free 127.0.0.1 port, and the process is gone when the ``with``
block exits, however it exits. Readiness is probed (bounded), never waited for with a
fixed sleep. The server keeps nothing on disk (no RDB snapshots, no AOF), in a temporary
directory of its own unless given one. Standard library only, like the rest of
``keyapi_async.testing``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where Debian's package puts the binary, for when /usr/bin is not on PATH.
_FALLBACK = "/usr/bin/redis-server"
#: Seconds for the server to answer PING, and for it to exit once asked to.
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
#: A free port can be taken by someone else between our probe and redis binding it.
_PORT_ATTEMPTS = 3


class RedisServerUnavailable(RuntimeError):
    """No redis-server binary on PATH or in /usr/bin."""


@dataclass(frozen=True)
class RedisServer:
    """A running throwaway redis-server: its URL and process (a test may stop it)."""

    url: str
    process: subprocess.Popen[bytes]


def find_redis_server() -> str | None:
    """The redis-server executable on PATH, else /usr/bin's, else None."""
    exe = shutil.which("redis-server")
    if exe is None and os.access(_FALLBACK, os.X_OK):
        exe = _FALLBACK
    return exe


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_as(port: int, pid: int) -> bool:
    """Whether the server on ``port`` answers, and is process ``pid`` (``INFO server``
    names it): a server someone else started on the port meanwhile is not ours."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
            return f"process_id:{pid}\r\n".encode() in reply
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it lingers: the process is reaped when this returns."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_TIMEOUT)


def _start(exe: str, directory: str) -> tuple[subprocess.Popen[bytes], int] | None:
    """Start on a free port and probe until it answers as itself; None if it exited
    (the port was taken)."""
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + _START_TIMEOUT
    try:
        while not _answers_as(port, proc.pid):
            if proc.poll() is not None:
                return None
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {port}")
            time.sleep(0.02)  # a poll interval, not a guess at how long startup takes
    except BaseException:
        _stop(proc)
        raise
    return proc, port


@contextlib.contextmanager
def redis_server(directory: str | Path | None = None) -> Iterator[RedisServer]:
    """Run a throwaway redis-server on a free 127.0.0.1 port; stop it on exit.

    Raises :class:`RedisServerUnavailable` when there is no redis-server binary, and
    RuntimeError when it does not start.
    """
    exe = find_redis_server()
    if exe is None:
        raise RedisServerUnavailable(
            "redis-server not found on PATH or in /usr/bin "
            "(apt-get install redis-server, or run .ci/redis.sh start)"
        )
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory())
        for _ in range(_PORT_ATTEMPTS):
            started = _start(exe, str(directory))
            if started is not None:
                break
        else:
            raise RuntimeError(f"redis-server exited at startup {_PORT_ATTEMPTS} times")
        proc, port = started
        try:
            yield RedisServer(f"redis://127.0.0.1:{port}/0", proc)
        finally:
            _stop(proc)


def record_slots(limiter: Any) -> list[int]:
    """Every slot (Redis-clock microseconds) the shared schedule hands the RedisRateLimiter
    ``limiter`` from now on, confirmed ones twice.

    The evidence that limiters drew from one budget, read without any timing: one
    schedule's distinct slots are at least one interval apart, whoever took them, where
    two schedules starting together hand out their first slots microseconds apart.
    """
    slots: list[int] = []
    reserve, confirm = limiter.reserve, limiter.confirm

    async def reserving() -> tuple[int, int]:
        slot, delay = await reserve()
        slots.append(slot)
        return slot, delay

    async def confirming(slot: int, reserved_at: int | None = None) -> tuple[int, int]:
        slot, delay = await confirm(slot, reserved_at)
        slots.append(slot)  # the confirmed slot again, or a fresh one
        return slot, delay

    limiter.reserve, limiter.confirm = reserving, confirming
    return slots
