"""``python -m benchmarks [--quick] [--only NAMES] [--out DIR]``: run, print, record.

Prints one table per section (figure, target, verdict), the Redis and PostgreSQL rows
when those servers are at hand and, last, the soak test (not in ``--quick``); then writes
``results.json`` and ``results.png`` to ``--out`` (``benchmarks/results`` by default).
The exit status is 0 unless a section crashed: verdicts are reported, not enforced
(``--strict`` also fails on a MISS). ``--quick`` shrinks every size for a CI smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from . import apps, bulk, decode, fidelity, gateways, memory, overhead, soak
from .chart import write_chart
from .harness import SectionResult, print_table

SECTIONS: dict[str, Callable[[bool], SectionResult]] = {
    "decode": decode.run,
    "overhead": overhead.run,
    "fidelity": fidelity.run,
    "crawl": bulk.run,
    "memory": memory.run,
    "gateways": gateways.run,
    "apps": apps.run,
}
PACKAGES = (
    "keyapi-async", "aiohttp", "msgspec", "aiolimiter", "orjson", "pydantic", "pydantic-core",
    "httpx", "matplotlib", "asyncpg",
)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Where and when the numbers were taken."""
    ram = None
    with contextlib.suppress(OSError, ValueError):
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "ram_gib": round(ram, 1) if ram else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "packages": versions,
    }


def _redis_reachable() -> bool:
    url = os.environ.get("KEYAPI_TEST_REDIS_URL")
    if url:
        parts = urlsplit(url)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2):
                return True
        except OSError:
            return False
    return shutil.which("redis-server") is not None


def _redis_section(quick: bool) -> SectionResult | None:
    """The Redis-shared budget rows (benchmarks/redis_workers.py), if Redis is at hand."""
    try:
        from . import redis_workers
    except ImportError:
        return None
    if not _redis_reachable():
        print("\nskipped: no redis")
        return None
    return redis_workers.run(quick)


def _postgres_section(quick: bool) -> SectionResult | None:
    """The PostgreSQL sink rows (benchmarks/postgres.py), if asyncpg and a server are at hand."""
    from . import postgres

    why = postgres.available()
    if why is not None:
        print(f"\nskipped: postgres: {why}")
        return None
    return postgres.run(quick)


#: Sections that may not run (no Redis or PostgreSQL; soak not in --quick): they may
#: return None.
OPTIONAL: dict[str, Callable[[bool], SectionResult | None]] = {
    "redis": _redis_section,
    "postgres": _postgres_section,
    "soak": soak.run,
}


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--only", default=",".join([*SECTIONS, *OPTIONAL]),
        help="comma-separated sections: " + ", ".join([*SECTIONS, *OPTIONAL]),
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any MISS (not --quick)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - {*SECTIONS, *OPTIONAL}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    info = machine()
    mode = "quick (smoke run, not judged)" if args.quick else "full"
    print(f"keyapi-async benchmarks, {mode}: {info['nproc']} CPUs, {info['ram_gib']} GiB, "
          f"Python {info['python']}, load {info['loadavg_at_start']}")
    started = time.perf_counter()
    results: list[SectionResult] = []
    crashed: list[str] = []
    for name in chosen:
        t0 = time.perf_counter()
        try:
            section = (OPTIONAL[name] if name in OPTIONAL else SECTIONS[name])(args.quick)
        except Exception as exc:
            traceback.print_exc()
            crashed.append(name)
            section = SectionResult(f"{name} (crashed)")
            section.add(name, None, "", note=f"{type(exc).__name__}: {exc}")
        if section is None:
            continue
        section.raw["section_seconds"] = time.perf_counter() - t0
        results.append(section)
        print_table(section)

    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "mode": "quick" if args.quick else "full",
        "machine": info,
        "loadavg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "seconds": time.perf_counter() - started,
        "sections": [s.to_json() for s in results],
        "crashed": crashed,
    }
    json_path = args.out / "results.json"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(payload)))
    note = write_chart(results, args.out / "results.png")
    print(f"\nwrote {json_path}" + (f"; {note}" if note else f" and {args.out / 'results.png'}"))
    misses = [r for s in results for r in s.rows if r.verdict == "MISS"]
    print(f"{len(misses)} target(s) missed" + (" (not judged in --quick)" if args.quick else "")
          + f"; {payload['seconds']:.0f} s")
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
        return 1
    return 1 if args.strict and misses and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
