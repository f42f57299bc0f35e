"""LocalRateLimiter's guarantee, checked exactly on a virtual clock."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math

import pytest
from virtual_clock import run_virtual

import keyapi_async as ka


def busiest_window(starts: list[float], width: float = 1.0) -> int:
    """Most starts in any half-open window [t, t + width)."""
    starts = sorted(starts)
    return max(bisect.bisect_left(starts, t + width) - i for i, t in enumerate(starts))


async def _start_times(limiter: ka.LocalRateLimiter, n: int, tasks: int) -> list[float]:
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await limiter.acquire()
            starts.append(loop.time())

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return starts


@pytest.mark.parametrize("qps", [1, 7, 10, 50, 200, 2.5, 2000])
def test_no_window_holds_more_than_qps_starts(qps: float) -> None:
    limiter = ka.LocalRateLimiter(qps)
    starts = run_virtual(_start_times(limiter, n=int(qps * 5) + 3, tasks=64))
    # ceil: with a fractional qps such as 2.5, some windows must hold 3 starts.
    assert busiest_window(starts) <= math.ceil(qps)
    # No burst at start-up: the first second holds no more than any other.
    assert sum(1 for t in starts if t - starts[0] < 1.0) <= math.ceil(qps)


@pytest.mark.parametrize("qps", [10, 200])
def test_starts_keep_to_their_slots_and_come_close_to_qps(qps: float) -> None:
    limiter = ka.LocalRateLimiter(qps)
    starts = run_virtual(_start_times(limiter, n=qps * 3, tasks=32))
    # GCRA: start k is never earlier than its slot, k intervals after the first, minus the
    # tolerance that lets a late wake-up be made up for.
    for k, t in enumerate(starts):
        assert t >= starts[0] + k * limiter.interval - limiter.tolerance - 1e-9
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    assert achieved >= 0.97 * qps  # the 2 % headroom is the only slack


def test_zero_headroom_and_tolerance_pace_at_exactly_qps() -> None:
    limiter = ka.LocalRateLimiter(20, headroom=0, tolerance=0)
    starts = run_virtual(_start_times(limiter, n=41, tasks=4))
    assert starts[-1] - starts[0] == pytest.approx(2.0)
    assert min(b - a for a, b in itertools.pairwise(starts)) == pytest.approx(0.05)


def test_a_late_start_is_made_up_for_within_the_tolerance() -> None:
    async def scenario() -> tuple[list[float], float]:
        limiter = ka.LocalRateLimiter(10, headroom=0, tolerance=0.01)
        loop = asyncio.get_running_loop()
        starts = []
        for k in range(5):
            await limiter.acquire()
            starts.append(loop.time())
            if k == 1:
                await asyncio.sleep(0.105)  # this task is late for its next slot by 5 ms
        return starts, limiter.interval

    starts, interval = run_virtual(scenario())
    # After the late start, the next one comes up to 10 ms early: the schedule recovers.
    assert starts[3] - starts[2] == pytest.approx(interval - 0.005)
    assert starts[4] - starts[3] == pytest.approx(interval)


def test_penalize_pauses_every_task_then_resumes_paced() -> None:
    async def scenario() -> tuple[list[float], float]:
        limiter = ka.LocalRateLimiter(10)
        loop = asyncio.get_running_loop()
        await limiter.acquire()
        await limiter.penalize(3.0)
        penalized_at = loop.time()
        starts = await _start_times(limiter, n=5, tasks=5)
        return starts, penalized_at

    starts, penalized_at = run_virtual(scenario())
    assert min(starts) >= penalized_at + 3.0
    assert busiest_window(starts) <= 10
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert min(gaps) >= 0.1 - 1e-9  # no burst when the pause ends


def test_permits_are_granted_first_come_first_served() -> None:
    async def scenario() -> list[int]:
        limiter = ka.LocalRateLimiter(5)
        order: list[int] = []

        async def take(i: int) -> None:
            await limiter.acquire()
            order.append(i)

        tasks = []
        for i in range(10):
            tasks.append(asyncio.ensure_future(take(i)))
            await asyncio.sleep(0)  # each task queues before the next is created
        await asyncio.gather(*tasks)
        return order

    assert run_virtual(scenario()) == list(range(10))


def test_cancelled_waiter_does_not_block_others() -> None:
    async def scenario() -> int:
        limiter = ka.LocalRateLimiter(1)
        await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await limiter.acquire()
        return 1

    assert run_virtual(scenario()) == 1


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_rejects_non_positive_qps(bad: float) -> None:
    with pytest.raises(ValueError, match="qps"):
        ka.LocalRateLimiter(bad)


def test_satisfies_the_rate_limiter_protocol() -> None:
    assert isinstance(ka.LocalRateLimiter(1), ka.RateLimiter)
