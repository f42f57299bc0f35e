"""Helpers for the hostile-server tests: a tiny server whose answers a test writes itself,
a server running in its own thread (for code that calls asyncio.run), and the exception
chain of an error."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")
DETAIL = "/v1/tiktok/video/detail/analytics"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hostile:
    """An HTTP server on 127.0.0.1 answering every path with ``handler``; counts requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[web.Request] = []
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    async def hold(self) -> None:
        """For a handler that never answers: returns only when the server stops."""
        assert self._stopping is not None
        await self._stopping.wait()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        return await self.handler(request)

    async def __aenter__(self) -> Hostile:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._stopping is not None
        self._stopping.set()
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class LoopThread:
    """An event loop in a thread of its own, for servers that must outlive asyncio.run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chain(exc: BaseException) -> list[BaseException]:
    """Every exception reachable through __cause__ and __context__ (not just the shown ones)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return seen
