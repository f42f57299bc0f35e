"""Coalescer: shared batches, one fetch per id on the wire, own results, errors, cancellation.

Every scenario runs on the virtual clock (tests/virtual_clock.py), so windows pass
instantly and times read off the loop are exact. The fake fetch blocks on a future per
call, which the test resolves: the order of events is decided by the test, never by timing.
``yield_to_tasks`` is one loop iteration (no time passes): tasks created just before run
their first step, which is all the joining a caller does before it waits.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from virtual_clock import run_virtual as _run_virtual

import keyapi_async as ka
from keyapi_async.app.coalescing import DEFAULT_WINDOW, Coalescer, Fetched
from keyapi_async.app.events import BatchCoalesced, Event


def run_virtual(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run on the virtual clock; a scenario stuck waiting fails after an hour of virtual time
    (instantly), instead of hanging the suite."""
    return _run_virtual(asyncio.wait_for(coro, 3600))


def rec(vid: str) -> str:
    return f"record-{vid}"


class Call:
    """One fetch call the test has not answered yet."""

    def __init__(self, ids: list[str], at: float) -> None:
        self.ids = ids
        self.at = at
        self.gate: asyncio.Future[Fetched[str] | BaseException] = (
            asyncio.get_running_loop().create_future()
        )
        self.cancelled = False

    def answer(self, unknown: frozenset[str] = frozenset(), **errors: BaseException) -> None:
        records = {i: rec(i) for i in self.ids if i not in unknown and i not in errors}
        self.gate.set_result(Fetched(records, errors))

    def fail(self, error: BaseException) -> None:
        self.gate.set_result(error)


class FakeFetch:
    """Records each call and waits until the test answers it."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._changed = asyncio.Event()

    async def __call__(self, ids: list[str]) -> Fetched[str]:
        call = Call(list(ids), asyncio.get_running_loop().time())
        self.calls.append(call)
        self._changed.set()
        try:
            outcome = await call.gate
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def calls_made(self, n: int) -> list[Call]:
        """Wait until ``n`` calls have been made; return them."""
        while len(self.calls) < n:
            self._changed.clear()
            await self._changed.wait()
        return self.calls[:n]


async def yield_to_tasks() -> None:
    await asyncio.sleep(0)


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


# -- batching --------------------------------------------------------------------------


def test_concurrent_callers_share_one_batch_and_get_their_own_records_in_order() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch)
        asks = [["a", "b"], ["c"], ["d", "e", "f"], ["g", "h", "i", "j"]]
        callers = [spawn(c.get(ids)) for ids in asks]
        [call] = await fetch.calls_made(1)
        assert sorted(call.ids) == list("abcdefghij")  # 10 ids: the batch left full
        call.answer()
        results = await asyncio.gather(*callers)
        assert results == [[rec(i) for i in ids] for ids in asks]
        assert len(fetch.calls) == 1 and c.batches == 1

    run_virtual(scenario())


def test_a_full_batch_leaves_at_once_a_partial_one_after_its_window() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, window=30.0)
        loop = asyncio.get_running_loop()
        first = spawn(c.get([str(n) for n in range(13)]))
        [full] = await fetch.calls_made(1)
        assert full.at == 0.0 and full.ids == [str(n) for n in range(10)]
        _, partial = await fetch.calls_made(2)
        assert partial.at == 30.0 and partial.ids == ["10", "11", "12"]
        full.answer()
        partial.answer()
        assert await first == [rec(str(n)) for n in range(13)]
        assert loop.time() == 30.0

    run_virtual(scenario())


def test_default_window_is_a_few_milliseconds() -> None:
    async def scenario() -> float:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch)
        caller = spawn(c.get(["a"]))
        [call] = await fetch.calls_made(1)
        call.answer()
        await caller
        return call.at

    assert run_virtual(scenario()) == DEFAULT_WINDOW <= 0.01


def test_repeats_and_unknown_ids_keep_the_callers_shape() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch)
        caller = spawn(c.get(["b", "a", "b", "zz"]))
        [call] = await fetch.calls_made(1)
        assert call.ids == ["b", "a", "zz"]  # each id once
        call.answer(unknown=frozenset({"zz"}))
        assert await caller == [rec("b"), rec("a"), rec("b"), None]
        assert await c.get([]) == []

    run_virtual(scenario())


def test_an_id_on_the_wire_is_not_requested_again_later_callers_join_it() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch)
        first = spawn(c.get(["x", "y"]))
        [call] = await fetch.calls_made(1)
        second = spawn(c.get(["y", "x"]))  # both ids are on the wire
        third = spawn(c.get(["x", "new"]))  # x joins, "new" needs a request of its own
        await yield_to_tasks()
        assert c.joined == 3
        _, call2 = await fetch.calls_made(2)
        assert call2.ids == ["new"]
        call.answer()
        call2.answer()
        assert await first == [rec("x"), rec("y")]
        assert await second == [rec("y"), rec("x")]
        assert await third == [rec("x"), rec("new")]
        assert len(fetch.calls) == 2
        # Once answered, a new ask goes out again (keeping records is the cache's job).
        again = spawn(c.get(["x"]))
        _, _, call3 = await fetch.calls_made(3)
        assert call3.ids == ["x"]
        call3.answer()
        assert await again == [rec("x")]

    run_virtual(scenario())


def test_under_load_ids_gather_into_full_batches_while_fetches_are_busy() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        events: list[Event] = []
        c: Coalescer[str] = Coalescer(fetch, max_in_flight=1, emit=events.append)
        early = spawn(c.get(["a"]))
        [call] = await fetch.calls_made(1)  # the window passed: "a" went alone
        late = [spawn(c.get([f"id{n}"])) for n in range(25)]
        await yield_to_tasks()
        assert c.queued == 25 and c.in_flight == 1  # windows pass, the cap holds them
        call.answer()
        _, b1 = await fetch.calls_made(2)
        assert len(b1.ids) == 10
        b1.answer()
        _, _, b2 = await fetch.calls_made(3)
        b2.answer()
        _, _, _, b3 = await fetch.calls_made(4)
        b3.answer()
        assert [len(x.ids) for x in fetch.calls] == [1, 10, 10, 5]
        assert await early == [rec("a")]
        assert [r[0] for r in await asyncio.gather(*late)] == [rec(f"id{n}") for n in range(25)]
        batches = [e for e in events if isinstance(e, BatchCoalesced)]
        assert [(e.ids, e.asks, e.full) for e in batches] == [
            (1, 1, False), (10, 10, True), (10, 10, True), (5, 5, False)
        ]

    run_virtual(scenario())


def test_a_big_calls_full_batches_leave_at_once_and_later_callers_join_its_ids() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, window=30.0)
        early = spawn(c.get(["e1", "e2"]))  # gathers: waits for company or its window
        await yield_to_tasks()
        big = spawn(c.get([str(n) for n in range(25)]))
        await yield_to_tasks()
        late = spawn(c.get(["3", "24", "e1", "new"]))  # three ids queued or on the wire
        await yield_to_tasks()
        first, second = await fetch.calls_made(2)
        # The big call's first ids top up the gathering batch: ids leave in the order
        # asked; its next ten leave at once, without waiting for the window.
        assert first.ids == ["e1", "e2", *map(str, range(8))] and first.at == 0.0
        assert second.ids == [str(n) for n in range(8, 18)] and second.at == 0.0
        assert c.joined == 3
        _, _, third = await fetch.calls_made(3)
        assert third.ids == [*map(str, range(18, 25)), "new"] and third.at == 30.0
        for call in fetch.calls:
            call.answer(unknown=frozenset({"7"}))
        assert await early == [rec("e1"), rec("e2")]
        assert await big == [None if n == 7 else rec(str(n)) for n in range(25)]
        assert await late == [rec("3"), rec("24"), rec("e1"), rec("new")]
        sent = [i for call in fetch.calls for i in call.ids]
        assert len(sent) == len(set(sent)) == 28  # every id on the wire once
        assert not c._entries and c.queued == 0

    run_virtual(scenario())


def test_a_big_call_cancelled_before_its_batches_left_sends_only_what_others_want() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, max_in_flight=1, window=10.0)
        big = spawn(c.get([str(n) for n in range(30)]))
        [first] = await fetch.calls_made(1)  # 0-9 on the wire, two full batches queued
        joiner = spawn(c.get(["15"]))
        await yield_to_tasks()
        assert c.queued == 20 and c.joined == 1
        big.cancel()
        await asyncio.wait([big])
        assert c.queued == 1  # "15" is still wanted; the other 19 are dropped unsent
        assert not first.cancelled  # on the wire: it completes
        first.answer()
        _, second = await fetch.calls_made(2)
        assert second.ids == ["15"]
        second.answer()
        assert await joiner == [rec("15")]
        await c.drain()
        assert len(fetch.calls) == 2 and not c._entries

    run_virtual(scenario())


def test_full_batches_leave_up_to_max_in_flight_a_partial_one_under_its_own_cap() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, max_in_flight=3, partial_in_flight=1, window=1.0)
        caller = spawn(c.get([str(n) for n in range(25)]))
        first, second = await fetch.calls_made(2)  # both full batches at once
        assert first.at == second.at == 0.0 and c.queued == 5
        # Virtual time: the window passes, yet the partial batch keeps gathering while
        # the partial cap (one fetch) is reached.
        await asyncio.sleep(5.0)
        assert len(fetch.calls) == 2 and c.queued == 5
        first.answer()
        await yield_to_tasks()
        assert len(fetch.calls) == 2  # one fetch still runs: the cap of a partial batch
        second.answer()
        _, _, third = await fetch.calls_made(3)
        assert third.ids == [str(n) for n in range(20, 25)] and third.at == 5.0
        third.answer()
        assert await caller == [rec(str(n)) for n in range(25)]

    run_virtual(scenario())


def test_batch_event_counts_the_asks_a_request_serves() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        events: list[Event] = []
        c: Coalescer[str] = Coalescer(fetch, emit=events.append)
        callers = [spawn(c.get(["a", "b"])) for _ in range(3)]
        [call] = await fetch.calls_made(1)
        call.answer()
        await asyncio.gather(*callers)
        assert events == [BatchCoalesced(ids=2, asks=6, full=False)]

    run_virtual(scenario())


# -- errors ----------------------------------------------------------------------------


def test_errors_reach_only_the_callers_whose_ids_were_in_the_failed_batch() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, batch_size=2)
        only_first = spawn(c.get(["a"]))
        both = spawn(c.get(["b", "c"]))  # b joins a's batch, c opens the second
        only_second = spawn(c.get(["d"]))
        first, second = await fetch.calls_made(2)
        assert (first.ids, second.ids) == (["a", "b"], ["c", "d"])
        first.fail(ka.ServerError("boom", status=500, request_id="r1"))
        with pytest.raises(ka.ServerError) as a_err:
            await only_first
        with pytest.raises(ka.ServerError) as b_err:
            await both
        second.answer()
        assert await only_second == [rec("d")]
        # Each caller raises its own copy: no shared traceback, the original as the cause.
        assert a_err.value is not b_err.value
        assert a_err.value.request_id == b_err.value.request_id == "r1"
        assert a_err.value.__cause__ is b_err.value.__cause__

    run_virtual(scenario())


def test_a_per_id_error_reaches_only_callers_of_that_id() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch)
        good = spawn(c.get(["a", "b"]))
        bad = spawn(c.get(["b", "broken"]))
        [call] = await fetch.calls_made(1)
        call.answer(broken=ka.DecodeError("record broken did not decode"))
        assert await good == [rec("a"), rec("b")]
        with pytest.raises(ka.DecodeError, match="broken"):
            await bad

    run_virtual(scenario())


@pytest.mark.parametrize(
    "fatal",
    [
        ka.AuthenticationError("revoked", status=401),
        ka.QuotaExceededError("no credits", status=402),
    ],
)
def test_a_fatal_error_reaches_every_waiting_caller_and_sends_nothing_new(
    fatal: ka.KeyAPIError,
) -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, batch_size=2, max_in_flight=2)
        in_first = spawn(c.get(["a", "b"]))
        in_second = spawn(c.get(["c", "d"]))
        queued = spawn(c.get(["e", "f", "a"]))  # e, f wait: both fetch slots are busy
        first, second = await fetch.calls_made(2)
        await yield_to_tasks()
        assert c.queued == 2
        first.fail(fatal)
        for caller in (in_first, in_second, queued):
            with pytest.raises(type(fatal)):
                await caller  # at once: the second batch has not answered yet
        assert not second.gate.done() and c.queued == 0
        second.answer()  # paid for, on the wire: it finishes, and feeds nobody
        await fetch.calls_made(2)
        assert len(fetch.calls) == 2  # e and f were never sent
        # A call after the halt starts afresh (a topped-up account works again).
        later = spawn(c.get(["e"]))
        _, _, third = await fetch.calls_made(3)
        third.answer()
        assert await later == [rec("e")]

    run_virtual(scenario())


def test_a_late_fatal_error_from_an_older_batch_does_not_fail_newer_callers() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, batch_size=1)
        a = spawn(c.get(["a"]))
        b = spawn(c.get(["b"]))
        first, second = await fetch.calls_made(2)
        first.fail(ka.AuthenticationError("revoked", status=401))
        fresh = spawn(c.get(["c"]))
        _, _, third = await fetch.calls_made(3)
        # The second batch was halted by the same 401 (the client aborts it): already spent.
        second.fail(ka.AuthenticationError("revoked", status=401))
        third.answer()
        assert await fresh == [rec("c")]
        for caller in (a, b):
            with pytest.raises(ka.AuthenticationError):
                await caller

    run_virtual(scenario())


# -- cancellation ----------------------------------------------------------------------


def test_cancelling_one_caller_never_cancels_another_callers_ids() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch)
        leaving = spawn(c.get(["x", "y"]))
        staying = spawn(c.get(["y"]))
        [call] = await fetch.calls_made(1)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        call.answer()
        assert await staying == [rec("y")]
        assert not call.cancelled

    run_virtual(scenario())


def test_queued_ids_every_caller_abandoned_are_never_sent() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, window=10.0)
        gone = spawn(c.get(["solo", "shared"]))
        stays = spawn(c.get(["shared"]))
        await yield_to_tasks()
        assert c.queued == 2
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert c.queued == 1  # "solo" dropped: nobody wants it any more
        [call] = await fetch.calls_made(1)
        assert call.ids == ["shared"]
        call.answer()
        assert await stays == [rec("shared")]

    run_virtual(scenario())


def test_a_batch_whose_callers_all_left_still_completes() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch)
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: reported.append(context))
        caller = spawn(c.get(["x"]))
        [call] = await fetch.calls_made(1)
        caller.cancel()
        await asyncio.wait([caller])
        assert caller.cancelled()
        assert c.in_flight == 1  # on the wire, paid for: it is not cancelled
        call.fail(ka.ServerError("late failure", status=500))  # nobody to tell
        await c.drain()
        assert not call.cancelled and c.in_flight == 0
        del caller, call
        fetch.calls.clear()  # the fake keeps the error it raised: let it go too
        gc.collect()
        assert reported == []  # no "Future exception was never retrieved"

    run_virtual(scenario())


def test_cancel_abandoned_cancels_a_batch_once_its_last_caller_leaves() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        asked: list[asyncio.Task[None]] = []

        def cancel(task: asyncio.Task[None]) -> bool:
            asked.append(task)
            return True

        c: Coalescer[str] = Coalescer(fetch, cancel_abandoned=cancel)
        first = spawn(c.get(["x", "y"]))
        second = spawn(c.get(["y"]))
        [call] = await fetch.calls_made(1)
        first.cancel()
        await asyncio.wait([first])
        assert not call.cancelled and asked == []  # "y" is still wanted by the second
        second.cancel()
        await asyncio.wait([second])
        # The last caller waited for the cancellation: nothing of it is left running.
        assert call.cancelled and len(asked) == 1 and c.in_flight == 0 and not c._entries
        # A new ask opens a fresh fetch; it never joins the cancelled one.
        again = spawn(c.get(["x"]))
        _, call2 = await fetch.calls_made(2)
        call2.answer()
        assert await again == [rec("x")]

    run_virtual(scenario())


def test_cancel_abandoned_may_decline_and_the_batch_completes() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, cancel_abandoned=lambda task: False)
        caller = spawn(c.get(["x"]))
        [call] = await fetch.calls_made(1)
        caller.cancel()
        await asyncio.wait([caller])
        assert c.in_flight == 1 and not call.cancelled
        call.answer()
        await c.drain()
        assert c.in_flight == 0 and not c._entries

    run_virtual(scenario())


def test_a_caller_failing_on_one_batch_abandons_its_other_batch() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, batch_size=1, cancel_abandoned=lambda task: True)
        caller = spawn(c.get(["a", "b"]))
        first, second = await fetch.calls_made(2)
        first.fail(ka.ServerError("boom", status=500))
        with pytest.raises(ka.ServerError):
            await caller
        assert second.cancelled and c.in_flight == 0  # nobody else wanted "b"

    run_virtual(scenario())


def test_aclose_fails_waiting_callers_and_refuses_new_ones() -> None:
    async def scenario() -> None:
        fetch = FakeFetch()
        c: Coalescer[str] = Coalescer(fetch, batch_size=1, max_in_flight=1)
        on_wire = spawn(c.get(["a"]))
        queued = spawn(c.get(["b"]))
        [call] = await fetch.calls_made(1)
        await c.aclose()
        assert call.cancelled
        for caller in (on_wire, queued):
            with pytest.raises(ka.ConfigurationError, match="closed"):
                await caller
        with pytest.raises(ka.ConfigurationError, match="closed"):
            await c.get(["c"])
        assert len(fetch.calls) == 1

    run_virtual(scenario())


@pytest.mark.parametrize(
    "kwargs",
    [{"window": -1}, {"window": float("nan")}, {"batch_size": 0}, {"batch_size": True},
     {"max_in_flight": 0}, {"max_in_flight": 1.5}, {"partial_in_flight": 0}],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    async def fetch(ids: list[str]) -> Fetched[str]:
        raise AssertionError

    with pytest.raises(ValueError):
        Coalescer(fetch, **kwargs)


# -- property: any interleaving ---------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    callers=st.integers(1, 40),
    cap=st.sampled_from([None, 1, 3]),
    cancel=st.booleans(),
    big=st.booleans(),
)
def test_any_interleaving_keeps_every_guarantee(
    seed: int, callers: int, cap: int | None, cancel: bool, big: bool
) -> None:
    """Random asks, latencies, failures and cancellations; every invariant checked.

    Latency here is simulated time on the virtual clock (the fetch's own sleep), not a
    synchronization device: the test only reads outcomes.
    """
    rnd = random.Random(seed)
    ids = [f"v{n}" for n in range(25)]
    unknown = set(rnd.sample(ids, 3))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        on_wire: set[str] = set()

        async def fetch(batch: list[str]) -> Fetched[str]:
            assert 1 <= len(batch) <= 10 and len(set(batch)) == len(batch)
            assert not on_wire & set(batch), "an id was requested twice while on the wire"
            on_wire.update(batch)
            try:
                await asyncio.sleep(rnd.uniform(0.001, 0.05))
                if rnd.random() < 0.15:
                    raise ka.ServerError("flaky", status=500)
                return Fetched({i: rec(i) for i in batch if i not in unknown})
            finally:
                on_wire.difference_update(batch)

        c: Coalescer[str] = Coalescer(
            fetch, max_in_flight=cap, cancel_abandoned=(lambda task: True) if cancel else None
        )

        async def caller(asked: list[str], delay: float) -> list[str | None] | str:
            await asyncio.sleep(delay)
            try:
                return await c.get(asked)
            except ka.ServerError:
                return "error"

        # Big asks (whole batches of their own, besides the gathering one) or small ones.
        asks = [
            rnd.choices(ids, k=rnd.randint(1, 40 if big and rnd.random() < 0.3 else 6))
            for _ in range(callers)
        ]
        tasks = [loop.create_task(caller(a, rnd.uniform(0, 0.03))) for a in asks]
        doomed = [t for t in tasks if rnd.random() < 0.2]
        await asyncio.sleep(rnd.uniform(0, 0.04))
        for t in doomed:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for asked, task, result in zip(asks, tasks, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                assert task in doomed
                continue
            if result == "error":
                continue
            assert result == [None if i in unknown else rec(i) for i in asked]
        await c.drain()  # abandoned batches finish on their own
        assert c.queued == 0 and not c._entries

    run_virtual(scenario())
