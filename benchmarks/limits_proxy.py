"""A small aiohttp reverse proxy rate-limited by the ``limits`` library (its own process).

Each cell listens on its own 127.0.0.1 port and forwards to an origin (the fake server)
what the limiter lets through, keyed by the ``Authorization`` header; the rest gets HTTP
429 with a short JSON body of the proxy's own (not a KeyAPI envelope), as an API gateway
built on ``limits`` (flask-limiter, slowapi) would send. Strategies: ``moving`` (a true
sliding log: at most N hits in any window ending now) and ``fixed`` (N hits per window
that starts at the key's first hit; rejected hits count too, as the library does).

``python -m benchmarks.limits_proxy --cell STRATEGY:RATE/PER:ORIGIN_URL ...`` prints
``listening on URL URL ...`` (one URL per cell, in order) once every port accepts, then
serves until SIGTERM or SIGINT. ``PER`` is ``second`` or ``minute``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ("moving", "fixed")
#: Headers passed through from the origin's answer besides the body and its type.
_PASS_HEADERS = ("Retry-After",)


@dataclass(frozen=True)
class ProxyCell:
    """One limiter: ``strategy`` over ``rate`` hits per ``per``, in front of ``origin``."""

    strategy: str
    rate: int
    origin: str
    per: str = "second"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.per not in ("second", "minute") or self.rate < 1:
            raise ValueError(f"bad rate {self.rate}/{self.per}")

    def arg(self) -> str:
        """This cell as a ``--cell`` argument."""
        return f"{self.strategy}:{self.rate}/{self.per}:{self.origin}"

    @classmethod
    def parse(cls, text: str) -> ProxyCell:
        """The inverse of :meth:`arg`."""
        strategy, _, rest = text.partition(":")
        rate, _, origin = rest.partition(":")
        amount, _, per = rate.partition("/")
        return cls(strategy, int(amount), origin, per or "second")


def make_app(cell: ProxyCell, session: aiohttp.ClientSession) -> web.Application:
    """The proxy for one cell; ``session`` carries the keep-alive pool to the origin."""
    from limits import parse
    from limits.aio.storage import MemoryStorage
    from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    item = parse(f"{cell.rate}/{cell.per}")
    storage = MemoryStorage()
    limiter = (
        MovingWindowRateLimiter(storage) if cell.strategy == "moving"
        else FixedWindowRateLimiter(storage)
    )
    limited = f'{{"error": "Rate limit exceeded: {item}"}}'.encode()

    async def handle(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Authorization", "")
        if not await limiter.hit(item, key):
            return web.Response(status=429, body=limited, content_type="application/json")
        headers = {"Authorization": key} if key else {}
        async with session.request(
            request.method, cell.origin + request.path_qs, headers=headers
        ) as upstream:
            body = await upstream.read()
            passed = {h: upstream.headers[h] for h in _PASS_HEADERS if h in upstream.headers}
            return web.Response(
                status=upstream.status, body=body, headers=passed,
                content_type=upstream.content_type,
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(cells: list[ProxyCell], host: str = "127.0.0.1") -> None:
    """Serve every cell until SIGTERM/SIGINT; announce the URLs on one stdout line."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    runners: list[web.AppRunner] = []
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        try:
            urls = []
            for cell in cells:
                runner = web.AppRunner(make_app(cell, session), access_log=None)
                await runner.setup()
                runners.append(runner)
                site = web.TCPSite(runner, host, 0)
                await site.start()
                port = runner.addresses[0][1]
                urls.append(f"http://{host}:{port}")
            print("listening on " + " ".join(urls), flush=True)
            await stopping.wait()
        finally:
            for runner in runners:
                await runner.cleanup()


@contextlib.contextmanager
def limits_proxy(cells: Sequence[ProxyCell]) -> Iterator[list[str]]:
    """Run the proxy for ``cells`` in a child process; yield one base URL per cell."""
    from .harness import await_listening, stop_process

    cmd = [sys.executable, "-m", "benchmarks.limits_proxy"]
    for cell in cells:
        cmd += ["--cell", cell.arg()]
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        try:
            assert proc.stdout is not None
            urls = await_listening(proc, proc.stdout)
            if urls is None or len(urls) != len(cells):
                errors.seek(0)
                raise RuntimeError(f"limits proxy did not start: {errors.read()[-2000:]}")
            yield urls
        finally:
            stop_process(proc)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--cell STRATEGY:RATE/PER:ORIGIN`` (repeatable)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.limits_proxy")
    parser.add_argument("--cell", action="append", required=True, metavar="SPEC")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        cells = [ProxyCell.parse(spec) for spec in args.cell]
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(cells, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
