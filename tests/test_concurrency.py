"""InFlightLimit: Little's-law sizing, FIFO slots, cancellation safety."""

from __future__ import annotations

import asyncio

import pytest

from keyapi_async.pipeline.concurrency import InFlightLimit


def test_fixed_limit_never_changes() -> None:
    limit = InFlightLimit(qps=100, fixed=3)
    limit._active = 1
    limit.release(latency=5.0)
    assert limit.limit == 3


def test_derived_limit_follows_latency() -> None:
    limit = InFlightLimit(qps=50, initial_latency=1.0)
    assert limit.limit == 50 * 1 * 2 + 1
    for _ in range(60):  # latency settles at 0.4 s
        limit._active += 1
        limit.release(latency=0.4)
    # Little's law: 50 qps x 0.4 s = 20 in flight; headroom x2, plus one (the EWMA is
    # still a hair above 0.4 after 60 samples, hence 42 is also right).
    assert 41 <= limit.limit <= 42
    for _ in range(60):
        limit._active += 1
        limit.release(latency=0.001)
    assert limit.limit == 2  # 50 x 0.001 x 2 rounds up to 1, plus one; also the floor


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_rejects_bad_fixed_limit(bad: object) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        InFlightLimit(qps=1, fixed=bad)  # type: ignore[arg-type]


async def test_slots_are_capped_and_fifo() -> None:
    limit = InFlightLimit(qps=1, fixed=2)
    await limit.acquire()
    await limit.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        await limit.acquire()
        order.append(i)

    waiters = [asyncio.ensure_future(wait(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert order == [] and limit.active == 2
    limit.release()
    limit.release()
    await asyncio.sleep(0)
    assert order == [0, 1] and limit.active == 2
    limit.release()
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2]


async def test_cancelled_waiter_hands_its_slot_on() -> None:
    limit = InFlightLimit(qps=1, fixed=1)
    await limit.acquire()
    first = asyncio.ensure_future(limit.acquire())
    second = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    limit.release()  # grants the slot to `first`...
    first.cancel()  # ...which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, timeout=5)
    assert limit.active == 1
