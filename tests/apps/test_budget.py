"""CreditBudget: never a credit over, under any interleaving; charge_of; the error."""

from __future__ import annotations

import asyncio
import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from virtual_clock import run_virtual

import keyapi_async as ka
from keyapi_async.app.budget import CreditBudget, charge_of
from keyapi_async.pipeline.decoding import DETAIL_DECODER, decode_response


def test_a_released_credit_is_reused_and_the_budget_then_refuses() -> None:
    async def scenario() -> None:
        budget = CreditBudget(1)
        first = await budget.reserve()
        second = asyncio.ensure_future(budget.reserve())  # waits: the one credit is in flight
        await asyncio.sleep(0)
        assert not second.done() and budget.remaining == 0
        first.release()  # a 429: cost nothing
        credit = await second
        credit.commit()
        assert (budget.spent, budget.unknown, budget.reserved) == (1, 0, 0)
        with pytest.raises(ka.CreditBudgetExceededError) as err:
            await budget.reserve()
        assert err.value.max_credits == 1 and err.value.spent == 1

    run_virtual(scenario())


def test_an_unknown_charge_counts_as_spent() -> None:
    async def scenario() -> None:
        budget = CreditBudget(2)
        (await budget.reserve()).keep()
        (await budget.reserve()).commit()
        assert budget.exhausted and (budget.spent, budget.unknown) == (1, 1)
        with pytest.raises(ka.CreditBudgetExceededError, match="1 with an unknown charge"):
            await budget.reserve()

    run_virtual(scenario())


def test_waiters_fail_when_the_credits_in_flight_turn_out_spent() -> None:
    async def scenario() -> None:
        budget = CreditBudget(2)
        a, b = await budget.reserve(), await budget.reserve()
        waiters = [asyncio.ensure_future(budget.reserve()) for _ in range(3)]
        await asyncio.sleep(0)
        a.commit()
        assert not any(w.done() for w in waiters)  # b may still come back unspent
        b.commit()
        for waiter in waiters:
            with pytest.raises(ka.CreditBudgetExceededError):
                await waiter

    run_virtual(scenario())


def test_waiters_are_served_in_order() -> None:
    async def scenario() -> list[int]:
        budget = CreditBudget(1)
        held = await budget.reserve()
        order: list[int] = []

        async def take(n: int) -> None:
            credit = await budget.reserve()
            order.append(n)
            credit.release()

        tasks = [asyncio.ensure_future(take(n)) for n in range(5)]
        await asyncio.sleep(0)
        held.release()
        await asyncio.gather(*tasks)
        return order

    assert run_virtual(scenario()) == [0, 1, 2, 3, 4]


def test_a_cancelled_waiter_reserves_nothing() -> None:
    async def scenario() -> None:
        budget = CreditBudget(1)
        held = await budget.reserve()
        waiter = asyncio.ensure_future(budget.reserve())
        await asyncio.sleep(0)
        held.release()  # the waiter is handed the credit ...
        waiter.cancel()  # ... and cancelled before it runs: the credit comes back
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (budget.reserved, budget.remaining) == (0, 1)
        assert (await budget.reserve()) is not None

    run_virtual(scenario())


def test_settling_twice_counts_once() -> None:
    async def scenario() -> None:
        budget = CreditBudget(3)
        credit = await budget.reserve()
        credit.commit()
        credit.release()
        credit.keep()
        assert credit.settled
        assert (budget.spent, budget.unknown, budget.reserved) == (1, 0, 0)

    run_virtual(scenario())


def test_a_zero_budget_sends_nothing_and_bad_budgets_are_refused() -> None:
    async def scenario() -> None:
        with pytest.raises(ka.CreditBudgetExceededError):
            await CreditBudget(0).reserve()

    run_virtual(scenario())
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(ka.ConfigurationError):
            CreditBudget(bad)  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    max_credits=st.integers(0, 15),
    tasks=st.integers(1, 30),
)
def test_never_a_credit_over_under_any_interleaving(
    seed: int, max_credits: int, tasks: int
) -> None:
    """Tasks retry like the client: every attempt reserves; outcomes are random."""
    rnd = random.Random(seed)

    async def scenario() -> None:
        budget = CreditBudget(max_credits)
        charged = unknown = 0
        peak = 0

        async def attempt() -> None:
            nonlocal charged, unknown, peak
            credit = await budget.reserve()
            peak = max(peak, budget.spent + budget.unknown + budget.reserved)
            await asyncio.sleep(rnd.uniform(0, 0.05))  # on the wire (virtual time)
            outcome = rnd.choice([True, True, False, None])
            charged += outcome is True
            unknown += outcome is None
            credit.settle(outcome)

        async def worker() -> str:
            try:
                for _ in range(rnd.randint(1, 4)):
                    await asyncio.sleep(rnd.uniform(0, 0.02))
                    await attempt()
            except ka.CreditBudgetExceededError:
                return "stopped"
            return "done"

        results = await asyncio.gather(*(worker() for _ in range(tasks)))
        assert peak <= max_credits
        assert charged + unknown <= max_credits  # what the server may have billed
        assert (budget.spent, budget.unknown, budget.reserved) == (charged, unknown, 0)
        if "stopped" in results:
            # Refused only once the budget was truly used up, never early.
            assert charged + unknown == max_credits

    run_virtual(scenario())


# -- charge_of: real errors from the decoder ---------------------------------------------


def _error(status: int, body: bytes) -> ka.KeyAPIError:
    with pytest.raises(ka.KeyAPIError) as err:
        decode_response(DETAIL_DECODER, status, body)
    return err.value


@pytest.mark.parametrize(
    ("status", "body", "charged"),
    [
        (200, b'{"code":429,"message":"slow down","data":null}', False),
        (200, b'{"code":402,"message":"no credits"}', False),
        (200, b'{"code":500,"message":"oops"}', False),
        (200, b'{"code":0,"data":[{"video_id":', None),  # truncated: may have been billed
        (429, b"<html>429 Too Many Requests</html>", False),
        (401, b'{"code":401,"message":"bad key"}', False),
        (403, b"<html>forbidden</html>", False),
        (502, b"<html>bad gateway</html>", None),
        (500, b'{"code":500,"message":"oops"}', None),
    ],
)
def test_charge_of_real_answers(status: int, body: bytes, charged: bool | None) -> None:
    assert charge_of(_error(status, body)) is charged


def test_charge_of_success_and_lost_answers() -> None:
    assert charge_of(None) is True
    assert charge_of(ka.APIConnectionError("reset")) is None
    assert charge_of(asyncio.CancelledError()) is None


def test_the_error_is_fatal_says_what_to_do_and_pickles() -> None:
    err = ka.CreditBudgetExceededError("budget used up", max_credits=5, spent=5)
    assert isinstance(err, ka.KeyAPIError) and err.fatal and not err.retryable
    assert "max_credits" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), again.max_credits, again.spent, str(again)) == (
        ka.CreditBudgetExceededError, 5, 5, str(err)
    )
