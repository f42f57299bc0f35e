"""Section "apps": an async web app on one client, with coalescing off, on, and on with a cache.

2,000 handler calls arrive at random (uniformly) within 5 seconds, each asking 1-3 ids drawn
with repeats from 1,000 distinct ids, on one ``KeyAPIClient(qps=50)`` in this process,
against the fake server in its own process (sliding window 50 qps, latency 50 ms). Each
run gets a key of its own, so no run inherits another's window at the server.

Figures, per mode: requests and credits the server saw, against two floors,
``ceil(ids asked / 10)`` (ids asked: each call's distinct ids, summed: what calls sent on
their own could at best pack) and ``ceil(distinct ids / 10)`` (each id paid once); and the
latency each handler sees (from its arrival to its answer), p50 and p99. A window sweep
(5, 20, 50 ms, with the cache) shows the credits-for-latency trade.

The latency coalescing *adds* is measured where it shows, under light traffic (200 calls
within 10 s: a request each stays well under 50 qps, so without coalescing no call waits
for a permit): p99 with coalescing minus p99 without. Under the main load coalescing
removes latency instead (without it 2,000 requests queue for 40 s of permits).

Run alone: ``python -m benchmarks.apps [--quick]`` (or ``python -m benchmarks --only apps``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
from dataclasses import dataclass
from typing import Any

import keyapi_async as ka
from keyapi_async.app.coalescing import DEFAULT_WINDOW
from keyapi_async.limiting.base import DEFAULT_HEADROOM
from keyapi_async.testing.data import SyntheticData

from .harness import SectionResult, fake_server, print_table

TITLE = "apps: coalescing and cache (qps 50, latency 50 ms)"
QPS = 50
LATENCY = 0.05
#: One permit interval at the client's pacing (its 2 % headroom included).
PERMIT = 1 / (QPS * (1 - DEFAULT_HEADROOM))


@dataclass(frozen=True)
class Workload:
    """Handler calls: (arrival second, ids asked), sorted by arrival."""

    calls: list[tuple[float, list[str]]]

    @property
    def asked(self) -> int:
        """Each call's distinct ids, summed."""
        return sum(len(set(ids)) for _, ids in self.calls)

    @property
    def distinct(self) -> int:
        return len({i for _, ids in self.calls for i in ids})


def workload(calls: int, distinct: int, spread: float, seed: int = 1) -> Workload:
    """``calls`` calls within ``spread`` s, each 1-3 ids drawn from ``distinct`` ids."""
    rnd = random.Random(seed)
    universe = SyntheticData(seed=seed, known_ratio=0.9, ranking_length=0).make_ids(distinct)
    made = [(rnd.uniform(0, spread), rnd.choices(universe, k=rnd.randint(1, 3)))
            for _ in range(calls)]
    return Workload(sorted(made, key=lambda call: call[0]))


@dataclass
class Run:
    """One mode's outcome."""

    requests: int
    credits: int
    latencies: list[float]
    stats: ka.ClientStats

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _app(url: str, key: str, load: Workload, options: dict[str, Any]) -> Run:
    async with ka.KeyAPIClient(key, base_url=url, qps=QPS, **options) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        latencies: list[float] = []

        async def handler(at: float, ids: list[str]) -> None:
            await asyncio.sleep(max(0.0, t0 + at - loop.time()))
            start = loop.time()
            await client.video_details(ids)
            latencies.append(loop.time() - start)

        await asyncio.gather(*(handler(at, ids) for at, ids in load.calls))
        return Run(0, 0, latencies, client.stats)


def _run(server: Any, key: str, load: Workload, **options: Any) -> Run:
    run = asyncio.run(_app(server.url, key, load, options))
    stats = server.stats(key)
    run.requests, run.credits = int(stats["requests"]), int(stats["credits_spent"])
    return run


def run(quick: bool) -> SectionResult:
    """The three modes, the window sweep and the light-traffic latency rows."""
    result = SectionResult(TITLE)
    if quick:
        main, light = workload(200, 100, 1.0), workload(40, 40, 2.0, seed=2)
    else:
        main, light = workload(2000, 1000, 5.0), workload(200, 200, 10.0, seed=2)
    asked_floor = math.ceil(main.asked / 10)
    distinct_floor = math.ceil(main.distinct / 10)
    modes: dict[str, dict[str, Any]] = {
        "off": {"coalesce": False},
        "on": {},
        "on + cache": {"cache": ka.MemoryCache()},
    }
    sweep = {f"on + cache, window {w * 1000:g} ms": w for w in (0.02, 0.05, 0.1, 0.2)}
    keys = [f"bench-app-{n}" for n in range(len(modes) + len(sweep) + 2)]
    args = ("--qps", str(QPS), "--qps-mode", "sliding", "--latency", str(LATENCY))
    runs: dict[str, Run] = {}
    with fake_server(*args, keys=keys) as server:
        names = iter(keys)
        for label, options in modes.items():
            runs[label] = _run(server, next(names), main, **options)
        for label, window in sweep.items():
            runs[label] = _run(server, next(names), main, cache=ka.MemoryCache(),
                               coalesce_window=window)
        light_off = _run(server, next(names), light, coalesce=False)
        light_on = _run(server, next(names), light)

    result.notes.append(
        f"{len(main.calls)} calls within {main.calls[-1][0]:.1f} s, {main.asked} ids asked "
        f"(each call's distinct ids), {main.distinct} distinct: floors "
        f"ceil(asked / 10) = {asked_floor}, ceil(distinct / 10) = {distinct_floor}; "
        f"one client, qps {QPS}, default window {DEFAULT_WINDOW * 1000:g} ms"
    )
    for label, r in runs.items():
        note = (f"{r.credits} credits; x ceil(asked/10) {r.requests / asked_floor:.2f}, "
                f"x ceil(distinct/10) {r.requests / distinct_floor:.2f}; p50 "
                f"{r.pct(0.5) * 1000:.0f} ms, p99 {r.pct(0.99) * 1000:.0f} ms; "
                f"cache hits {r.stats.cache_hits}, credits saved {r.stats.credits_saved}")
        if label == "on":
            result.add(f"requests, coalescing {label}", r.requests, "requests",
                       target=f"<= {1.2 * asked_floor:.0f} (1.2 x {asked_floor})",
                       ok=r.requests <= 1.2 * asked_floor, note=note)
        elif label == "on + cache":
            result.add(f"requests, coalescing {label}", r.requests, "requests",
                       target=f"<= {1.05 * distinct_floor:.0f} (1.05 x {distinct_floor})",
                       ok=r.requests <= 1.05 * distinct_floor, note=note)
        else:
            result.add(f"requests, coalescing {label}", r.requests, "requests", note=note)
    for label, r in runs.items():
        result.add(f"p99 latency, {label}", r.pct(0.99) * 1000, "ms",
                   note=f"p50 {r.pct(0.5) * 1000:.0f} ms")
    added = (light_on.pct(0.99) - light_off.pct(0.99)) * 1000
    bound = (DEFAULT_WINDOW + PERMIT) * 1000
    result.add("p99 added by coalescing (light traffic)", added, "ms",
               target=f"<= {bound:.1f} (window + one permit)", ok=added <= bound,
               note=f"{len(light.calls)} calls within {light.calls[-1][0]:.1f} s: p99 "
               f"{light_off.pct(0.99) * 1000:.0f} ms off, {light_on.pct(0.99) * 1000:.0f} ms "
               f"on; p50 {light_off.pct(0.5) * 1000:.0f} / {light_on.pct(0.5) * 1000:.0f} ms; "
               f"requests {light_off.requests} off, {light_on.requests} on")
    result.raw = {
        "asked": main.asked, "distinct": main.distinct, "calls": len(main.calls),
        "floors": {"asked": asked_floor, "distinct": distinct_floor},
        "runs": {label: {"requests": r.requests, "credits": r.credits,
                         "p50_ms": r.pct(0.5) * 1000, "p99_ms": r.pct(0.99) * 1000,
                         "cache_hits": r.stats.cache_hits, "coalesced": r.stats.coalesced,
                         "credits_saved": r.stats.credits_saved}
                 for label, r in {**runs, "light off": light_off, "light on": light_on}.items()},
    }
    return result


def main() -> None:
    """``python -m benchmarks.apps [--quick]``: the section's table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    args = parser.parse_args()
    print_table(run(args.quick))


if __name__ == "__main__":
    main()
