"""Redis-shared budget: N worker processes crawl shards of one ids file with one key.

Each worker is its own process running a KeyAPIClient with a RedisRateLimiter of the same
name and the full qps; one fake server (its own process) enforces qps for the key. The
rows give, for N = 1, 2, 4: throughput achieved over configured qps (target >= 0.9x),
429 answers (target 0) and the busiest one-second window (target <= qps).

Run alone: ``python -m benchmarks.redis_workers [--quick] [--redis-url URL]``. Without
``--redis-url`` (or ``KEYAPI_TEST_REDIS_URL``) it starts a throwaway redis-server if one
is on PATH. ``--check`` runs one configuration and prints everything as JSON, ids and
limiter slots per shard included: tests/redis checks exact accounting and the sharing
from it. ``--client-qps auto`` tells the workers' shared limiter to discover the server's
limit instead (with ``--seconds`` to stop the crawls after that long): the gateways
section's row (benchmarks/gateways.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.harness import API_KEY, SectionResult, fake_server, print_table, stop_process
from keyapi_async.testing._redis_server import find_redis_server, record_slots, redis_server

TITLE = "Redis-shared budget: N worker processes, one key"
REPO = Path(__file__).resolve().parents[1]
DETAIL_PATH = "/v1/tiktok/video/detail/analytics"
#: Seconds a worker gets to import and report ready, and a whole run to finish.
_READY_TIMEOUT = 60.0
_RUN_TIMEOUT = 300.0


# -- the worker (a child process) -----------------------------------------------------


def parse_qps(text: str) -> float | str:
    """A worker's ``--client-qps``: a number, or "auto"."""
    return "auto" if text == "auto" else float(text)


def auto_unavailable() -> str | None:
    """Why ``RedisRateLimiter(..., qps="auto")`` cannot be built here, or None."""
    try:
        import keyapi_async as ka

        kwargs: dict[str, Any] = {"name": "probe", "qps": "auto"}
        ka.RedisRateLimiter("redis://127.0.0.1:1/0", **kwargs)
    except Exception as exc:
        return f"RedisRateLimiter(qps='auto') refused ({type(exc).__name__}: {exc})"
    return None


async def _crawl(
    base_url: str, redis_url: str, name: str, qps: float | str, ids: list[str],
    max_concurrency: int | None, seconds: float | None = None,
) -> dict[str, Any]:
    import aiohttp

    import keyapi_async as ka

    fetched: list[str] = []
    missing: list[str] = []
    failed: dict[str, str] = {}
    not_attempted = 0
    fatal = None
    stop = asyncio.Event()
    limiter_kw: dict[str, Any] = {"name": name, "qps": qps}
    async with ka.RedisRateLimiter(redis_url, **limiter_kw) as limiter, ka.KeyAPIClient(
        API_KEY, base_url=base_url, rate_limiter=limiter, max_concurrency=max_concurrency
    ) as client:
        slots = record_slots(limiter)
        # Warm up before the start line: a fresh process's first HTTP request runs cold
        # code paths for tens of ms, a one-off delay that is not the limiter's to absorb.
        # The admin route and a zero pause spend nothing from the key's budget.
        async with aiohttp.ClientSession() as session, session.get(base_url + "/_fake/stats"):
            pass
        await limiter.penalize(0)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        if seconds is not None:
            loop.call_later(seconds, stop.set)
        try:
            async with aclosing(client.iter_detail_batches(ids, stop=stop)) as batches:
                async for batch in batches:
                    if stop.is_set() and batch.error is None and not batch.sent:
                        not_attempted += len(batch.ids)  # the run's time was up
                    elif batch.error is not None or not batch.sent:
                        reason = repr(batch.error) if batch.error else "not sent"
                        failed.update(dict.fromkeys(batch.ids, reason))
                    else:
                        fetched.extend(v.video_id or "" for v in batch.videos)
                        missing.extend(batch.missing)
        except ka.KeyAPIError as exc:
            fatal = repr(exc)
        stats = client.stats
    return {
        "ids": ids, "fetched": fetched, "missing": missing, "failed": failed, "fatal": fatal,
        "not_attempted": not_attempted, "requests": stats.requests,
        "rate_limited": stats.rate_limited, "slots": slots,
    }


def worker_main(args: argparse.Namespace) -> None:
    """Crawl one shard: warm up, report ready, wait for 'go' on stdin, print JSON results."""
    from keyapi_async.limiting.redis import parse_shard, shard_filter

    index, count = parse_shard(args.shard)
    ids = list(shard_filter(Path(args.ids_file).read_text().split(), index, count))
    qps = args.qps if args.client_qps is None else parse_qps(args.client_qps)
    result = asyncio.run(_crawl(
        args.base_url, args.redis_url, args.name, qps, ids, args.max_concurrency, args.seconds
    ))
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")


# -- the orchestrator -----------------------------------------------------------------


def run_workers(
    redis_url: str, workers: int, qps: float, n_ids: int, max_concurrency: int | None = None,
    *, client_qps: float | str | None = None, seconds: float | None = None,
) -> dict[str, Any]:
    """Crawl ``n_ids`` ids split over ``workers`` processes; results, stats and arrivals.

    The server allows ``qps``; the workers' shared limiter is told ``client_qps`` (default
    ``qps``; "auto" to discover it). ``seconds`` stops the workers' crawls after that long
    (their unsent ids count as ``not_attempted``). ``accepted`` holds the arrival times of
    the requests the server answered with success.
    """
    ids = [str(7_100_000_000_000_000_000 + i * 7919) for i in range(n_ids)]
    name = f"bench-{uuid.uuid4().hex}"
    with fake_server("--qps", f"{qps:g}") as server, tempfile.TemporaryDirectory() as tmp:
        ids_file = Path(tmp, "ids.txt")
        ids_file.write_text("\n".join(ids) + "\n")
        procs: list[subprocess.Popen[str]] = []
        try:
            for i in range(1, workers + 1):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.redis_workers", "--worker",
                     "--base-url", server.url, "--redis-url", redis_url, "--name", name,
                     "--qps", f"{qps:g}", "--shard", f"{i}/{workers}", "--ids-file",
                     str(ids_file),
                     *([] if max_concurrency is None else
                       ["--max-concurrency", str(max_concurrency)]),
                     *([] if client_qps is None else ["--client-qps", str(client_qps)]),
                     *([] if seconds is None else ["--seconds", f"{seconds:g}"])],
                    cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                ))
            for proc in procs:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"worker exited with {proc.wait(_READY_TIMEOUT)}")
            started = time.monotonic()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            shards = []
            for proc in procs:
                out, _ = proc.communicate(timeout=_RUN_TIMEOUT)
                if proc.returncode != 0:
                    raise RuntimeError(f"worker failed with exit status {proc.returncode}")
                shards.append(msgspec.json.decode(out.strip().splitlines()[-1]))
            elapsed = time.monotonic() - started
        finally:
            for proc in procs:
                stop_process(proc)
        stats = server.stats(API_KEY)
        log = [r for r in server.requests() if r["path"] == DETAIL_PATH]
        arrivals = sorted(r["time"] for r in log)
        accepted = sorted(r["time"] for r in log if r["status"] == 200 and not r["code"])
    return {
        "workers": workers, "qps": qps, "ids": ids, "shards": shards, "stats": stats,
        "arrivals": arrivals, "accepted": accepted, "elapsed": elapsed,
    }


def _summary(run: dict[str, Any]) -> dict[str, float]:
    arrivals = run["arrivals"]
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    achieved = (len(arrivals) - 1) / span if span > 0 else 0.0
    return {
        "achieved": achieved,
        "ratio": achieved / run["qps"],
        "429s": float(run["stats"]["by_status"].get("429", 0)),
        "busiest": float(run["stats"]["busiest_window"]),
        "failed": float(sum(len(shard["failed"]) for shard in run["shards"])),
    }


def _first_failure(run: dict[str, Any]) -> str:
    """The first reason a worker gave for failed ids (or its fatal error), else ''."""
    for shard in run["shards"]:
        if shard["fatal"]:
            return str(shard["fatal"])
        for reason in shard["failed"].values():
            return str(reason)
    return ""


def run(quick: bool, redis_url: str | None = None) -> SectionResult:
    """One run per N = 1, 2, 4 at the same qps; a row each for throughput, 429s, busiest."""
    result = SectionResult(TITLE)
    qps = 20.0 if quick else 50.0
    seconds = 3 if quick else 6  # of crawling at full speed, per run
    url = redis_url or os.environ.get("KEYAPI_TEST_REDIS_URL")
    with contextlib.ExitStack() as stack:
        if url is None:
            if find_redis_server() is None:
                result.add("redis-server", None, "", note="no Redis: pass --redis-url")
                return result
            url = stack.enter_context(redis_server()).url
        for workers in (1, 2, 4):
            run_ = run_workers(url, workers, qps, n_ids=int(qps * seconds * 10))
            s = _summary(run_)
            failure = _first_failure(run_)
            result.raw[f"N={workers}"] = {**s, "stats": run_["stats"], "first_failure": failure}
            result.add(
                f"N={workers}: achieved / configured qps", s["ratio"], "x", target=">= 0.9x",
                ok=s["ratio"] >= 0.9, note=f"{s['achieved']:.1f} of {qps:g} qps",
            )
            # A worker whose ids all failed sends nothing: say why rather than show 0 qps.
            result.add(
                f"N={workers}: ids failed", s["failed"], "ids", target="0",
                ok=s["failed"] == 0 and not failure, note=failure[:240],
            )
            result.add(f"N={workers}: 429 answers", s["429s"], "", target="0", ok=s["429s"] == 0)
            result.add(
                f"N={workers}: busiest 1 s window", s["busiest"], "requests",
                target=f"<= {qps:g}", ok=s["busiest"] <= qps,
            )
    result.notes.append(
        f"qps {qps:g} for the key; each worker configured with the full qps and sharing it "
        "through one RedisRateLimiter name; throughput = arrivals over their span"
    )
    return result


def main(argv: list[str] | None = None) -> None:
    """Command line: the benchmark table, ``--check`` JSON, or ``--worker`` (internal)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis_workers")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--redis-url")
    parser.add_argument("--check", action="store_true", help="one run, all results as JSON")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--qps", type=float, default=20.0)
    parser.add_argument("--ids", type=int, default=400)
    parser.add_argument("--max-concurrency", type=int, help="each worker's client cap")
    parser.add_argument("--client-qps", help="the workers' limiter qps, or auto")
    parser.add_argument("--seconds", type=float, help="stop each worker's crawl after this")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--shard", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
    elif args.check:
        with contextlib.ExitStack() as stack:
            url = args.redis_url or stack.enter_context(redis_server()).url
            out = run_workers(
                url, args.workers, args.qps, args.ids, args.max_concurrency,
                client_qps=None if args.client_qps is None else parse_qps(args.client_qps),
                seconds=args.seconds,
            )
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
    else:
        print_table(run(args.quick, args.redis_url))


if __name__ == "__main__":
    main()
