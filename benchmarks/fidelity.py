"""Section 3: rate-limit fidelity against a strict sliding-window server.

The fake server (own process) allows at most ``floor(qps)`` arrivals in any sliding
one-second window per key and answers 429 beyond that, after a latency of ``L +- J``.
Each run uses a fresh key, so one run's window never leaks into the next.

* ``keyapi_async``: ``KeyAPIClient(qps=Q, max_concurrency=None)`` (in-flight cap sized
  from observed latency), ``client.video_details(ids)``.
* ``naive AsyncLimiter(Q, 1)``: a plain aiohttp loop gated by ``aiolimiter.AsyncLimiter(Q,
  1)``, retrying a 429 at once through the same limiter: what the aiolimiter README
  suggests. Its bucket starts empty, so it lets about 2 x Q through in its first second.

Achieved qps is measured on the server: accepted (HTTP 200) arrivals per second between
the first and the last accepted arrival.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

import keyapi_async as ka
from keyapi_async.client.details import DETAIL_PATH
from keyapi_async.pipeline.decoding import DETAIL_DECODER
from keyapi_async.testing.data import SyntheticData

from .harness import SectionResult, ServerProcess, fake_server, median

TITLE = "3. Rate-limit fidelity (strict sliding window)"
#: (qps, latency, jitter) as the issue sets them.
CONFIGS = ((10, 0.05, 0.01), (50, 0.05, 0.01), (200, 0.05, 0.01), (50, 0.4, 0.1))
NAIVE_MAX_TRIES = 5
_keys = itertools.count()

Runner = Callable[[str, str, float, Sequence[str]], Awaitable[None]]


async def run_sdk(url: str, key: str, qps: float, ids: Sequence[str]) -> None:
    """The SDK with default concurrency sizing."""
    async with ka.KeyAPIClient(key, base_url=url, qps=qps, max_concurrency=None) as client:
        await client.video_details(ids)


async def run_naive(url: str, key: str, qps: float, ids: Sequence[str]) -> None:
    """aiohttp + ``AsyncLimiter(qps, 1)``, retrying 429s through the limiter."""
    limiter = AsyncLimiter(qps, 1)
    sem = asyncio.Semaphore(256)
    headers = {"Authorization": f"Bearer {key}"}

    async def one(session: aiohttp.ClientSession, joined: str) -> None:
        async with sem:
            for _ in range(NAIVE_MAX_TRIES):
                async with limiter, session.get(url, params={"video_ids": joined}) as resp:
                    body = await resp.read()
                if DETAIL_DECODER.decode(body).code != 429:
                    return

    batches = [",".join(ids[i : i + 10]) for i in range(0, len(ids), 10)]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await asyncio.gather(*(one(session, b) for b in batches))


def _observe(server: ServerProcess, key: str, log: list[dict[str, Any]]) -> dict[str, float]:
    mine = [r for r in log if r["key"] == key]
    accepted = sorted(r["time"] for r in mine if r["status"] == 200)
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    stats = server.stats(key)
    return {
        "achieved_qps": (len(accepted) - 1) / span if span > 0 else 0.0,
        "rate_limited": float(sum(1 for r in mine if r["status"] == 429)),
        "requests": float(len(mine)),
        "busiest_accepted_window": float(stats["busiest_accepted_window"]),
    }


def _one_config(
    qps: int, latency: float, jitter: float, seconds: float, rounds: int,
    runners: dict[str, Runner] | None = None,
) -> dict[str, dict[str, list[float]]]:
    requests = int(qps * seconds)
    ids = SyntheticData(seed=0, known_ratio=0.9, ranking_length=0).make_ids(requests * 10)
    if runners is None:
        runners = {"keyapi_async": run_sdk, "naive AsyncLimiter": run_naive}
    keys = {name: [f"k{next(_keys)}" for _ in range(rounds)] for name in runners}
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in runners}
    all_keys = [k for ks in keys.values() for k in ks]
    args = ("--qps", str(qps), "--qps-mode", "sliding", "--latency", str(latency),
            "--jitter", str(jitter))
    with fake_server(*args, keys=all_keys) as server:
        url = server.url + DETAIL_PATH
        for r in range(rounds):
            order = list(runners) if r % 2 == 0 else list(runners)[::-1]
            for name in order:
                t0 = time.perf_counter()
                base = url if name.startswith("naive") else server.url
                coro = runners[name](base, keys[name][r], qps, ids)
                asyncio.run(asyncio.wait_for(coro, timeout=seconds * 6 + 10))
                wall = time.perf_counter() - t0
                observed = _observe(server, keys[name][r], server.requests())
                observed["wall_s"] = wall
                for metric, value in observed.items():
                    samples[name].setdefault(metric, []).append(value)
    return samples


def run(quick: bool) -> SectionResult:
    """Every configuration, SDK and naive client interleaved; judge the SDK."""
    result = SectionResult(TITLE)
    seconds, rounds = (1.0, 1) if quick else (4.5, 2)
    for qps, latency, jitter in CONFIGS:
        label = f"qps {qps}, {latency * 1000:.0f}±{jitter * 1000:.0f} ms"
        samples = _one_config(qps, latency, jitter, seconds, rounds)
        result.raw[label] = samples
        floor = 0.97 if latency <= 0.05 else 0.9
        for name, metrics in samples.items():
            ratio = median(metrics["achieved_qps"]) / qps
            limited = int(sum(metrics["rate_limited"]))
            if name == "keyapi_async":
                target = f">= {floor}x" + (", 0 x 429" if latency <= 0.05 else "")
                ok = ratio >= floor and (limited == 0 or latency > 0.05)
                result.add(f"{label}: {name} achieved/configured", ratio, "x",
                           target=target, ok=ok)
                result.add(f"{label}: {name} 429s", limited, "count",
                           target="0" if latency <= 0.05 else "",
                           ok=(limited == 0) if latency <= 0.05 else None)
            else:
                result.add(f"{label}: {name} achieved/configured", ratio, "x")
                result.add(f"{label}: {name} 429s", limited, "count")
    result.notes.append(
        f"~{seconds:g} s of requests per run, {rounds} round(s) per client, interleaved; "
        "achieved qps = accepted arrivals per second on the server; 429s summed over rounds; "
        "SDK with max_concurrency=None"
    )
    return result
