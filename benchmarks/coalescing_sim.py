"""A model of issue 14's "apps" benchmark for the Coalescer alone, on a virtual clock.

2,000 handler calls arrive at random within ``--spread`` seconds, each asking 1-3 ids drawn
(with repeats) from 1,000 distinct ids. Each shared request waits for a permit from a real
``LocalRateLimiter(50)`` and then takes 50 ms, as the fake server would. Time is simulated
(tests/virtual_clock.py), so the run is instant and exact; no network, no client. It sizes
the coalescer's design choices (window, in-flight cap) before the client wiring exists;
the real benchmark (client + FakeKeyAPI) replaces it once coalescing is in the client.

    python benchmarks/coalescing_sim.py [--spread 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from virtual_clock import run_virtual

from keyapi_async.app.coalescing import Coalescer, Fetched
from keyapi_async.limiting.local import LocalRateLimiter

QPS = 50
LATENCY = 0.05


def simulate(
    cap: int | None, window: float, spread: float, seed: int, coalesce: bool = True
) -> tuple[int, int, int, float, float]:
    """(requests, ids asked, distinct ids asked, p50 s, p99 s) of one run."""
    rnd = random.Random(seed)
    universe = [str(7_100_000_000_000_000_000 + n) for n in range(1000)]
    calls = [(rnd.uniform(0, spread), rnd.choices(universe, k=rnd.randint(1, 3)))
             for _ in range(2000)]

    async def run() -> tuple[int, list[float]]:
        loop = asyncio.get_running_loop()
        limiter = LocalRateLimiter(QPS)
        sent = 0

        async def fetch(ids: list[str]) -> Fetched[str]:
            nonlocal sent
            await limiter.acquire()
            sent += 1
            await asyncio.sleep(LATENCY)
            return Fetched({i: i for i in ids})

        coalescer: Coalescer[str] = Coalescer(fetch, window=window, max_in_flight=cap)
        latencies: list[float] = []

        async def handler(at: float, ids: list[str]) -> None:
            await asyncio.sleep(at)
            start = loop.time()
            if coalesce:
                await coalescer.get(ids)
            else:
                await fetch(list(dict.fromkeys(ids)))
            latencies.append(loop.time() - start)

        await asyncio.gather(*(handler(at, ids) for at, ids in calls))
        return sent, sorted(latencies)

    sent, latencies = run_virtual(run())
    asked = sum(len(ids) for _, ids in calls)
    distinct = len({i for _, ids in calls for i in ids})
    return (sent, asked, distinct, latencies[len(latencies) // 2],
            latencies[int(len(latencies) * 0.99)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spread", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    little = math.ceil(QPS * LATENCY * 2) + 1  # the client's derived in-flight cap
    print(f"qps {QPS}, latency {LATENCY * 1000:g} ms, 2,000 calls over {args.spread:g} s")
    print("| coalescing | window | in-flight cap | requests | x ceil(asked/10) | "
          "x ceil(distinct/10) | p50 | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    rows: list[tuple[str, float, int | None, bool]] = [
        ("off", 0.0, None, False), ("on", 0.005, None, True), ("on", 0.005, little, True),
        ("on", 0.002, little, True), ("on", 0.02, little, True),
    ]
    for label, window, cap, coalesce in rows:
        sent, asked, distinct, p50, p99 = simulate(cap, window, args.spread, args.seed, coalesce)
        print(f"| {label} | {window * 1000:g} ms | {cap if cap else '-'} | {sent} | "
              f"{sent / math.ceil(asked / 10):.2f} | {sent / math.ceil(distinct / 10):.2f} | "
              f"{p50 * 1000:.0f} ms | {p99 * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
