"""Command line for running ``FakeKeyAPI`` as a standalone process.

The parser is built by ``add_arguments`` so another CLI (``keyapi-async
mock-server``) can mount the same options on its own sub-command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

from keyapi_async.testing.faults import Faults, fault_field_types
from keyapi_async.testing.ratelimit import QPS_MODES
from keyapi_async.testing.server import DEFAULT_API_KEY, FakeKeyAPI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the fake server's options to ``parser``."""
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 serves other hosts too)",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--qps", type=float, default=None, help="per-key limit (default none)")
    parser.add_argument(
        "--qps-mode", choices=QPS_MODES, default="sliding",
        help="how --qps is enforced: a sliding one-second window (default), fixed "
        "one-second windows, a token bucket, or gcra (nginx limit_req; see --burst)",
    )
    parser.add_argument(
        "--count-rejected", action="store_true", help="rejected requests count against the limit"
    )
    parser.add_argument(
        "--burst", type=int, default=0,
        help="--qps-mode gcra: requests accepted ahead of the rate (nginx limit_req burst)",
    )
    parser.add_argument(
        "--arrival-jitter", type=float, default=0.0, metavar="SECONDS",
        help="random delay, uniform in [0, SECONDS], before the limiter sees a request",
    )
    parser.add_argument(
        "--retry-after", type=float, default=None, help="Retry-After seconds on 429 answers"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--jitter", type=float, default=0.0, help="+/- seconds around latency")
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of the generated data and faults: the same seed, the same answers",
    )
    parser.add_argument(
        "--known-ratio", type=float, default=0.9,
        help="share of video ids the server knows (default 0.9); the rest are missing",
    )
    parser.add_argument(
        "--ranking-length", type=int, default=1000,
        help="records in each ranking list (default 1000, i.e. 100 pages of 10)",
    )
    parser.add_argument(
        "--api-key",
        action="extend",
        nargs="+",
        default=None,
        metavar="KEY",
        help=f"accepted keys (default {DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--credits", type=int, default=None, help="credits per key (default unlimited)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Faults field, e.g. http_5xx=0.1, slow_seconds=5, fail_first=2",
    )


def parse_faults(specs: Sequence[str]) -> Faults:
    """Build ``Faults`` from ``NAME=VALUE`` strings; ValueError on bad input."""
    types = fault_field_types()
    values: dict[str, Any] = {}
    for spec in specs:
        name, sep, raw = spec.partition("=")
        if not sep or name not in types:
            raise ValueError(
                f"bad --fault {spec!r}: expected NAME=VALUE with NAME in {sorted(types)}"
            )
        try:
            values[name] = types[name](raw)
        except ValueError:
            raise ValueError(f"bad --fault {spec!r}: {raw!r} is not a number") from None
    return Faults(**values)


def server_from_args(args: argparse.Namespace) -> FakeKeyAPI:
    """Build (without starting) the server the parsed options describe."""
    keys = args.api_key or [DEFAULT_API_KEY]
    return FakeKeyAPI(
        dict.fromkeys(keys, args.credits),
        qps=args.qps,
        qps_mode=args.qps_mode,
        count_rejected=args.count_rejected,
        burst=args.burst,
        retry_after=args.retry_after,
        latency=args.latency,
        jitter=args.jitter,
        arrival_jitter=args.arrival_jitter,
        seed=args.seed,
        known_ratio=args.known_ratio,
        ranking_length=args.ranking_length,
        faults=parse_faults(args.fault),
        host=args.host,
        port=args.port,
    )


async def serve(server: FakeKeyAPI) -> None:
    """Start ``server``, announce its URL on stdout, and serve until SIGINT or SIGTERM."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows, where Ctrl-C arrives as KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    await server.start()
    try:
        # The one line a parent process waits for; flushed so pipes see it at once.
        print(f"listening on {server.url}", flush=True)
        await stopping.wait()
    finally:
        await server.stop()


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Serve with parsed ``args`` until SIGINT/SIGTERM; bad options go to ``parser.error``."""
    try:
        server = server_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(server))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the fake KeyAPI server from the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m keyapi_async.testing",
        description="Run a local fake KeyAPI server (TikTok video endpoints).",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    sys.exit(main())
