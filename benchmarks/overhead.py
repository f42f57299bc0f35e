"""Section 2: what the client costs per request, end to end over loopback.

The fake server runs in its own process with no QPS limit and no latency, so the client
process's CPU time (``time.process_time``) is the client's alone. Three clients fetch the
same ids with the same in-flight cap, interleaved round by round in one event loop:

* ``keyapi_async``: ``client.video_details(ids)`` (validation, dedupe, batching, limiter,
  in-flight cap, retry wrapper, typed decoding, accounting);
* ``bare aiohttp + msgspec``: a semaphore, ``session.get``, ``resp.read()`` and the SDK's
  own msgspec decoder: the floor of this stack;
* ``httpx + pydantic``: what a user might write: ``httpx.AsyncClient`` and pydantic v2
  ``model_validate_json`` of equivalent models.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import httpx

import keyapi_async as ka
from keyapi_async.client.details import DETAIL_PATH
from keyapi_async.pipeline.decoding import DETAIL_DECODER
from keyapi_async.testing.data import SyntheticData

from . import pydantic_models as pm
from .harness import API_KEY, SectionResult, fake_server, interleave, medians

TITLE = "2. Client overhead (video_details over loopback)"
CONCURRENCY = 16
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}

Fetch = Callable[[Sequence[str]], Awaitable[int]]


def _batches(ids: Sequence[str]) -> list[str]:
    return [",".join(ids[i : i + 10]) for i in range(0, len(ids), 10)]


def sdk_fetch(client: ka.KeyAPIClient) -> Fetch:
    """The SDK's public call."""

    async def fetch(ids: Sequence[str]) -> int:
        return len(await client.video_details(ids))

    return fetch


def bare_fetch(session: aiohttp.ClientSession, url: str) -> Fetch:
    """The floor: aiohttp, a semaphore, and the SDK's msgspec decoder, nothing else."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(joined: str) -> int:
        async with sem, session.get(url, params={"video_ids": joined}) as resp:
            body = await resp.read()
        return len(DETAIL_DECODER.decode(body).data or ())

    async def fetch(ids: Sequence[str]) -> int:
        return sum(await asyncio.gather(*(one(b) for b in _batches(ids))))

    return fetch


def httpx_fetch(client: httpx.AsyncClient) -> Fetch:
    """What a user might write: httpx plus pydantic v2 models."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(joined: str) -> int:
        async with sem:
            resp = await client.get(DETAIL_PATH, params={"video_ids": joined})
        resp.raise_for_status()
        return len(pm.DetailEnvelope.model_validate_json(resp.content).data or ())

    async def fetch(ids: Sequence[str]) -> int:
        return sum(await asyncio.gather(*(one(b) for b in _batches(ids))))

    return fetch


def _measure(
    loop: asyncio.AbstractEventLoop, fetch: Fetch, ids: Sequence[str], expected: int
) -> Callable[[], dict[str, float]]:
    requests = (len(ids) + 9) // 10

    def measure() -> dict[str, float]:
        cpu0, t0 = time.process_time(), time.perf_counter()
        got = loop.run_until_complete(asyncio.wait_for(fetch(ids), timeout=120))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if got != expected:
            raise AssertionError(f"expected {expected} records, got {got}")
        return {"requests_per_s": requests / wall, "cpu_us_per_request": cpu / requests * 1e6}

    return measure


async def _open_clients(
    url: str,
) -> tuple[ka.KeyAPIClient, aiohttp.ClientSession, httpx.AsyncClient]:
    # Inside the loop: aiohttp binds its connector to the running loop.
    client = ka.KeyAPIClient(API_KEY, base_url=url, qps=100_000, max_concurrency=CONCURRENCY)
    session = aiohttp.ClientSession(headers=HEADERS, connector=aiohttp.TCPConnector(limit=0))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    hclient = httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits)
    return client, session, hclient


def run(quick: bool) -> SectionResult:
    """Interleave the three clients against one server process; judge throughput ratios."""
    result = SectionResult(TITLE)
    n_ids, rounds = (500, 2) if quick else (3000, 9)
    data = SyntheticData(seed=0, known_ratio=0.9, ranking_length=0)
    ids = data.make_ids(n_ids)
    expected = sum(data.is_known(i) for i in ids)
    loop = asyncio.new_event_loop()
    try:
        with fake_server() as server:
            url = server.url
            client, session, hclient = loop.run_until_complete(_open_clients(url))
            try:
                fetches = {
                    "keyapi_async": sdk_fetch(client),
                    "bare aiohttp + msgspec": bare_fetch(session, url + DETAIL_PATH),
                    "httpx + pydantic": httpx_fetch(hclient),
                }
                timers = {n: _measure(loop, f, ids, expected) for n, f in fetches.items()}
                for timer in timers.values():  # warm up: connections, caches
                    timer()
                samples = interleave(timers, rounds)
            finally:
                loop.run_until_complete(client.aclose())
                loop.run_until_complete(session.close())
                loop.run_until_complete(hclient.aclose())
    finally:
        loop.close()
    med = medians(samples)
    result.raw = {"ids": n_ids, "concurrency": CONCURRENCY, "samples": samples}
    for name, metrics in med.items():
        result.add(f"{name}: throughput", metrics["requests_per_s"], "req/s")
        result.add(f"{name}: client CPU", metrics["cpu_us_per_request"], "µs/req")
    ours = med["keyapi_async"]["requests_per_s"]
    vs_bare = ours / med["bare aiohttp + msgspec"]["requests_per_s"]
    vs_httpx = ours / med["httpx + pydantic"]["requests_per_s"]
    result.add("throughput vs bare aiohttp", vs_bare, "x", target=">= 0.8x", ok=vs_bare >= 0.8)
    result.add("throughput vs httpx + pydantic", vs_httpx, "x", target=">= 3x", ok=vs_httpx >= 3)
    cpu_ratio = (
        med["keyapi_async"]["cpu_us_per_request"]
        / med["bare aiohttp + msgspec"]["cpu_us_per_request"]
    )
    result.add("CPU per request vs bare aiohttp", cpu_ratio, "x")
    result.notes.append(
        f"{n_ids} ids ({n_ids // 10} requests of 10) per run, max_concurrency {CONCURRENCY} "
        f"for all, client qps 100000; medians of {rounds} interleaved rounds; server in "
        "its own process (its CPU is not counted)"
    )
    return result
