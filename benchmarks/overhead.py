"""Section 2: what the client costs per request, end to end over loopback.

The fake server runs in its own process with no QPS limit and no latency, so the client
process's CPU time (``time.process_time``) is the client's alone. The clients fetch the
same ids with the same in-flight cap, interleaved round by round in one event loop:

* ``keyapi_async``: ``client.video_details(ids)`` as configured by default (coalescing on,
  no hooks, no cache): validation, dedupe, the coalescer, limiter, in-flight cap, retry
  wrapper, typed decoding, accounting;
* ``keyapi_async, coalesce=False``: the same call without the coalescer (what it costs);
* ``bare aiohttp + msgspec``: a semaphore, ``session.get``, ``resp.read()`` and the SDK's
  own msgspec decoder: the floor of this stack;
* ``httpx + pydantic``: what a user might write: ``httpx.AsyncClient`` and pydantic v2
  ``model_validate_json`` of equivalent models.

Each round yields CPU µs per request and requests per second for every client; the
section reports medians, the spread (min-max over rounds) and the ratio to the bare loop
taken within each round (paired: a busy second hits both sides of a pair alike).

``python -m benchmarks.overhead --layers [-n ROUNDS]`` peels the SDK's path one layer at a
time, all interleaved with the bare loop in one process (see :func:`layers`): what each
layer costs where it runs, which a profiler cannot say (see below).

``python -m benchmarks.overhead --profile sdk|bare [-n N]`` only runs N calls of one
client under pyinstrument and prints the call tree and the flat list of frames (the
``bench`` extra installs it): where the client's time goes. Pyinstrument samples the wall
clock: trust a profile only when its "CPU time" is close to its "Duration" (on a shared
machine, time spent preempted is charged to whatever frame was running).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
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
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, t0 = time.process_time(), time.perf_counter()
        got = loop.run_until_complete(asyncio.wait_for(fetch(ids), timeout=120))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        if got != expected:
            raise AssertionError(f"expected {expected} records, got {got}")
        return {
            "requests_per_s": requests / wall,
            "cpu_us_per_request": cpu / requests * 1e6,
            # The kernel's share (socket sends and the wake-ups of the server they cause).
            "sys_us_per_request": (usage.ru_stime - usage0.ru_stime) / requests * 1e6,
        }

    return measure


async def _open_clients(
    url: str,
) -> tuple[ka.KeyAPIClient, ka.KeyAPIClient, aiohttp.ClientSession, httpx.AsyncClient]:
    # Inside the loop: aiohttp binds its connector to the running loop.
    client = ka.KeyAPIClient(API_KEY, base_url=url, qps=100_000, max_concurrency=CONCURRENCY)
    plain = ka.KeyAPIClient(
        API_KEY, base_url=url, qps=100_000, max_concurrency=CONCURRENCY, coalesce=False
    )
    session = aiohttp.ClientSession(headers=HEADERS, connector=aiohttp.TCPConnector(limit=0))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    hclient = httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits)
    return client, plain, session, hclient


SDK, PLAIN, BARE, HTTPX = (
    "keyapi_async", "keyapi_async, coalesce=False", "bare aiohttp + msgspec", "httpx + pydantic"
)


def _paired(samples: dict[str, dict[str, list[float]]], name: str, metric: str) -> list[float]:
    """``name``'s metric over the bare loop's, round by round."""
    return [a / b for a, b in zip(samples[name][metric], samples[BARE][metric], strict=True)]


def _spread(values: list[float]) -> str:
    return f"min {min(values):.3g}, max {max(values):.3g} over {len(values)} rounds"


def run(quick: bool) -> SectionResult:
    """Interleave the clients against one server process; judge throughput ratios."""
    result = SectionResult(TITLE)
    n_ids, rounds = (500, 2) if quick else (3000, 31)
    data = SyntheticData(seed=0, known_ratio=0.9, ranking_length=0)
    ids = data.make_ids(n_ids)
    expected = sum(data.is_known(i) for i in ids)
    loop = asyncio.new_event_loop()
    try:
        with fake_server() as server:
            url = server.url
            client, plain, session, hclient = loop.run_until_complete(_open_clients(url))
            try:
                fetches = {
                    SDK: sdk_fetch(client),
                    PLAIN: sdk_fetch(plain),
                    BARE: bare_fetch(session, url + DETAIL_PATH),
                    HTTPX: httpx_fetch(hclient),
                }
                timers = {n: _measure(loop, f, ids, expected) for n, f in fetches.items()}
                for timer in timers.values():  # warm up: connections, caches
                    timer()
                samples = interleave(timers, rounds)
            finally:
                loop.run_until_complete(client.aclose())
                loop.run_until_complete(plain.aclose())
                loop.run_until_complete(session.close())
                loop.run_until_complete(hclient.aclose())
    finally:
        loop.close()
    med = medians(samples)
    result.raw = {"ids": n_ids, "concurrency": CONCURRENCY, "samples": samples}
    for name, metrics in med.items():
        result.add(f"{name}: throughput", metrics["requests_per_s"], "req/s",
                   note=_spread(samples[name]["requests_per_s"]))
        result.add(f"{name}: client CPU", metrics["cpu_us_per_request"], "µs/req",
                   note=_spread(samples[name]["cpu_us_per_request"]))
        result.add(f"{name}: of which kernel", metrics["sys_us_per_request"], "µs/req")
    ours = med[SDK]["requests_per_s"]
    vs_bare = ours / med[BARE]["requests_per_s"]
    vs_httpx = ours / med[HTTPX]["requests_per_s"]
    # Judged on the ratio taken within each round: on a shared machine a busy second
    # slows both sides of a pair, while the medians of the two columns may come from
    # different seconds.
    paired = statistics.median(_paired(samples, SDK, "requests_per_s"))
    result.add("throughput vs bare aiohttp, paired by round", paired, "x", target=">= 0.9x",
               ok=paired >= 0.9, note=_spread(_paired(samples, SDK, "requests_per_s")))
    result.add("throughput vs bare aiohttp, ratio of medians", vs_bare, "x")
    result.add("throughput vs httpx + pydantic", vs_httpx, "x", target=">= 3x", ok=vs_httpx >= 3)
    for name in (SDK, PLAIN):
        cpu = _paired(samples, name, "cpu_us_per_request")
        result.add(f"{name}: CPU per request vs bare aiohttp, paired by round",
                   statistics.median(cpu), "x", note=_spread(cpu))
    result.notes.append(
        f"{n_ids} ids ({n_ids // 10} requests of 10) per run, max_concurrency {CONCURRENCY} "
        f"for all, client qps 100000; medians of {rounds} interleaved rounds; server in "
        "its own process (its CPU is not counted)"
    )
    return result


def layers(rounds: int) -> None:
    """Build the SDK's path up layer by layer, each interleaved with the bare loop; print
    CPU µs per request, and CPU and throughput over the bare loop's paired by round.

    Every row fetches the same 3,000 ids 10 a request, 16 at a time; each adds one layer
    to the row above: the SDK's session and ``Transport.get`` (redaction, the capped body
    read) with the same msgspec decoder as the bare loop; the typed decode with the page
    pass (``decode_response``); the attempt pipeline (``_request``: in-flight slot,
    limiter, accounting, retry wrapper); the detail accounting (``_detail_batch``); the
    whole call without, then with, the coalescer. The middle rows call the client's
    internals (``client/attempts.py``, ``client/details.py``): a diagnostic, kept in step
    with them, not an API.
    """
    from keyapi_async.client.attempts import CallScope, Request

    data = SyntheticData(seed=0, known_ratio=0.9, ranking_length=0)
    ids = data.make_ids(3000)
    expected = sum(data.is_known(i) for i in ids)
    loop = asyncio.new_event_loop()

    def gathered(one: Callable[[str], Awaitable[int]], capped: bool = True) -> Fetch:
        async def fetch(ids: Sequence[str]) -> int:
            sem = asyncio.Semaphore(CONCURRENCY)

            async def slot(joined: str) -> int:
                if not capped:  # the pipeline's own in-flight cap limits it
                    return await one(joined)
                async with sem:
                    return await one(joined)

            return sum(await asyncio.gather(*(slot(b) for b in _batches(ids))))

        return fetch

    try:
        with fake_server() as server:
            client, plain, session, hclient = loop.run_until_complete(_open_clients(server.url))
            transport = client._transport

            async def raw(joined: str) -> int:
                answer = await transport.get(DETAIL_PATH, {"video_ids": joined})
                return len(DETAIL_DECODER.decode(answer.body).data or ())

            async def typed(joined: str) -> int:
                answer = await transport.get(DETAIL_PATH, {"video_ids": joined})
                return len(client._decode_detail(answer).records)

            async def request(joined: str) -> int:
                decoded = await client._request(
                    DETAIL_PATH, {"video_ids": joined}, client._decode_detail,
                    Request(CallScope()),
                )
                return len(decoded.records)

            async def batch(joined: str) -> int:
                answer = await client._detail_batch(joined.split(","), Request(CallScope()))
                return len(answer.videos)

            fetches: dict[str, Fetch] = {
                BARE: bare_fetch(session, server.url + DETAIL_PATH),
                "+ SDK session, Transport.get": gathered(raw),
                "+ typed decode, page pass": gathered(typed),
                "+ attempt pipeline (_request)": gathered(request, capped=False),
                "+ detail accounting (_detail_batch)": gathered(batch, capped=False),
                "+ video_details, coalesce=False": sdk_fetch(plain),
                "+ coalescer (the default)": sdk_fetch(client),
            }
            try:
                timers = {n: _measure(loop, f, ids, expected) for n, f in fetches.items()}
                for timer in timers.values():
                    timer()
                samples = interleave(timers, rounds)
            finally:
                for closing in (client.aclose(), plain.aclose(), session.close(),
                                hclient.aclose()):
                    loop.run_until_complete(closing)
    finally:
        loop.close()
    print(f"{rounds} rounds; medians; ratios paired by round")
    print(f"{'layers':38} {'CPU µs/req':>10} {'CPU/bare':>9} {'thr/bare':>9}")
    for name in fetches:
        cpu = statistics.median(samples[name]["cpu_us_per_request"])
        cpu_ratio = statistics.median(_paired(samples, name, "cpu_us_per_request"))
        throughput = statistics.median(_paired(samples, name, "requests_per_s"))
        print(f"{name:38} {cpu:10.0f} {cpu_ratio:9.3f} {throughput:9.3f}")


def profile(which: str, calls: int) -> None:
    """Run ``calls`` calls of one client (after a warm-up) under pyinstrument; print."""
    from pyinstrument import Profiler
    from pyinstrument.renderers import ConsoleRenderer

    data = SyntheticData(seed=0, known_ratio=0.9, ranking_length=0)
    ids = data.make_ids(3000)
    loop = asyncio.new_event_loop()
    try:
        with fake_server() as server:
            client, plain, session, hclient = loop.run_until_complete(_open_clients(server.url))
            try:
                fetch = {
                    "sdk": sdk_fetch(client), "plain": sdk_fetch(plain),
                    "bare": bare_fetch(session, server.url + DETAIL_PATH),
                }[which]
                loop.run_until_complete(fetch(ids))
                profiler = Profiler(interval=0.0005, async_mode="disabled")
                profiler.start()
                for _ in range(calls):
                    loop.run_until_complete(fetch(ids))
                profiler.stop()
            finally:
                for closing in (client.aclose(), plain.aclose(), session.close(),
                                hclient.aclose()):
                    loop.run_until_complete(closing)
    finally:
        loop.close()
    print(profiler.output_text(unicode=True, color=False))
    print(profiler.output(ConsoleRenderer(unicode=True, color=False, flat=True)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--profile", choices=("sdk", "plain", "bare"))
    mode.add_argument("--layers", action="store_true", help="the cost of each layer")
    parser.add_argument("-n", type=int, help="calls of 3,000 ids (10), or rounds (41)")
    args = parser.parse_args()
    if args.layers:
        layers(args.n or 41)
    else:
        profile(args.profile, args.n or 10)
