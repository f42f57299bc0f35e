"""LocalRateLimiter's guarantee, checked exactly on a virtual clock."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random

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


@pytest.mark.parametrize("qps", [10, 50, 200])
def test_consecutive_permits_are_never_closer_than_one_over_qps(qps: float) -> None:
    # What nginx limit_req without burst demands: one request per 1/qps, never sooner.
    limiter = ka.LocalRateLimiter(qps)
    starts = run_virtual(_start_times(limiter, n=qps * 3, tasks=32))
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 1 / qps
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    assert 0.97 * qps <= achieved <= qps  # the 2 % headroom is the only slack


def test_the_min_gap_holds_under_late_wake_ups_idle_spells_and_rate_changes() -> None:
    """Random demand, a task that is late for its slot now and then, 429s that change
    the rate: each permit comes at least 1/qps after the previous one, and at least
    1/peak (the rate the server took before, see LocalRateLimiter), rate <= qps."""

    async def scenario() -> list[tuple[float, float]]:
        rng = random.Random(11)
        limiter = ka.LocalRateLimiter(40)
        loop = asyncio.get_running_loop()
        grants: list[tuple[float, float]] = []  # (time, pacing rate when granted)

        async def worker() -> None:
            for _ in range(60):
                await asyncio.sleep(rng.choice([0, 0, 0, rng.uniform(0, 0.3)]))
                await limiter.acquire()
                grants.append((loop.time(), limiter.control.peak(loop.time())))
                if rng.random() < 0.05:
                    await limiter.on_throttle(loop.time() - rng.uniform(0, 0.2))

        await asyncio.gather(*(worker() for _ in range(8)))
        return grants

    grants = run_virtual(scenario())
    assert len(grants) == 480
    for (before, _), (after, peak) in itertools.pairwise(grants):
        assert after - before >= 1 / peak - 1e-9 >= 1 / 40 - 1e-9
    assert min(peak for _, peak in grants) < 40 * 0.75  # the 429s did lower it


def test_zero_headroom_paces_at_exactly_qps() -> None:
    limiter = ka.LocalRateLimiter(20, headroom=0)
    starts = run_virtual(_start_times(limiter, n=41, tasks=4))
    assert starts[-1] - starts[0] == pytest.approx(2.0)
    assert min(b - a for a, b in itertools.pairwise(starts)) == pytest.approx(0.05)


def test_a_late_start_is_made_up_for_only_down_to_the_minimum_gap() -> None:
    async def scenario() -> tuple[list[float], float]:
        limiter = ka.LocalRateLimiter(10, headroom=0.1)  # interval 111 ms, min gap 100 ms
        loop = asyncio.get_running_loop()
        starts = []
        for k in range(7):
            await limiter.acquire()
            starts.append(loop.time())
            if k == 1:
                await asyncio.sleep(1 / 9 + 0.005)  # late for the next slot by 5 ms
            if k == 4:
                await asyncio.sleep(1 / 9 + 0.03)  # late by 30 ms
        return starts, limiter.interval

    starts, interval = run_virtual(scenario())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert interval == pytest.approx(1 / 9)
    # 5 ms late: the next start comes 5 ms early, and the schedule is back on its slots.
    assert gaps[2] == pytest.approx(interval - 0.005)
    assert gaps[3] == pytest.approx(interval)
    # 30 ms late: it catches up 11 ms only, the headroom: never closer than 1/qps.
    assert gaps[5] == pytest.approx(0.1)


def test_a_429_slows_the_pacing_down_and_the_rate_recovers_with_use() -> None:
    async def scenario() -> tuple[float, float, float, list[float]]:
        limiter = ka.LocalRateLimiter(50)
        loop = asyncio.get_running_loop()
        await limiter.acquire()
        started = loop.time()
        await limiter.acquire()
        await limiter.on_throttle(started)
        cut = limiter.qps
        await limiter.on_throttle(started)  # the same event: no second cut
        again = limiter.qps
        starts = await _start_times(limiter, n=300, tasks=16)
        return cut, again, limiter.qps, starts

    cut, again, recovered, starts = run_virtual(scenario())
    assert cut == again == pytest.approx(40)
    assert recovered == 50
    assert (starts[10] - starts[0]) / 10 >= 1 / 41  # paced at the lowered rate at first
    # ... and growing back within the second (CUBIC: 40 -> about 46 a second).
    assert 40 < sum(1 for t in starts if t - starts[0] < 1.0) <= 47


def test_auto_starts_slow_and_ramps_up_while_used() -> None:
    async def scenario() -> tuple[list[float], float]:
        limiter = ka.LocalRateLimiter("auto", max_qps=80)
        starts = await _start_times(limiter, n=200, tasks=64)
        return starts, limiter.qps

    starts, final = run_virtual(scenario())
    per_second = [sum(1 for t in starts if s <= t - starts[0] < s + 1) for s in range(3)]
    assert per_second[0] <= 8  # starts at 5 a second: no burst
    assert per_second[0] < per_second[1] < per_second[2]  # doubling
    assert final == 80  # up to max_qps


def test_an_idle_limiter_does_not_ramp_up() -> None:
    async def scenario() -> tuple[float, float]:
        limiter = ka.LocalRateLimiter("auto")
        await limiter.acquire()
        before = limiter.qps
        await asyncio.sleep(60)  # nobody asks for a permit for a minute
        await limiter.acquire()
        return before, limiter.qps

    before, after = run_virtual(scenario())
    assert before == 5 and after < 5 * 1.1


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


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "fast", True])
def test_rejects_non_positive_qps(bad: float) -> None:
    with pytest.raises(ValueError, match="qps"):
        ka.LocalRateLimiter(bad)


def test_max_qps_is_for_auto_only() -> None:
    assert ka.LocalRateLimiter("auto", max_qps=30).max_qps == 30
    assert ka.LocalRateLimiter("auto").qps == 5  # starts conservatively
    with pytest.raises(ValueError, match="max_qps"):
        ka.LocalRateLimiter(10, max_qps=30)
    with pytest.raises(ValueError, match="max_qps"):
        ka.LocalRateLimiter("auto", max_qps=0)


def test_satisfies_the_rate_limiter_protocol() -> None:
    assert isinstance(ka.LocalRateLimiter(1), ka.RateLimiter)
