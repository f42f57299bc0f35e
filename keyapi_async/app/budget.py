"""A credit budget: no request starts that could take the total past ``max_credits``.

Every request to KeyAPI may cost one credit. :class:`CreditBudget` counts them the only
way that is exact under concurrency: each attempt (retries included) *reserves* a credit
before it goes on the wire, and settles it when its outcome is known:

* **commit** - a success (code 0): the credit is spent;
* **release** - an answer that cannot have cost one (a non-zero code, an HTTP 4xx): the
  credit returns to the budget;
* **keep** - the charge is unknown (the answer was lost or damaged, or a gateway failed
  after the API may have answered): counted as spent, so the budget is never exceeded.

Guarantee: ``spent + unknown + reserved <= max_credits`` at every moment, so however many
tasks run, the credits charged can never exceed ``max_credits``. :meth:`CreditBudget.reserve`
raises :class:`~keyapi_async.CreditBudgetExceededError` once ``spent + unknown`` reaches the
budget; while credits are merely reserved by attempts in flight (which may come back
unspent) it waits for them, in FIFO order, rather than fail early.

:func:`charge_of` is the one rule mapping an attempt's outcome to its charge; the client
uses it for the budget and for the ``charged`` field of its events.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque

from ..pipeline.errors import ConfigurationError, CreditBudgetExceededError

__all__ = ["Credit", "CreditBudget", "charge_of"]


def charge_of(error: BaseException | None) -> bool | None:
    """Whether an attempt that went on the wire cost a credit: True, False or None (unknown).

    * no error (a code-0 answer): True;
    * no HTTP answer at all (network error, timeout, cancelled mid-flight): None;
    * HTTP 2xx carrying a non-zero code: False (the API said no, and that is free);
    * HTTP 2xx without a code (a damaged body): None;
    * HTTP 4xx: False (refused before any work: 400, 401, 402, 403, 404, 429);
    * HTTP 5xx: None (a gateway may have failed after the API answered).
    """
    if error is None:
        return True
    status = getattr(error, "status", None)
    if not isinstance(status, int):
        return None
    if 200 <= status < 300:
        code = getattr(error, "code", None)
        return False if code else None
    if 400 <= status < 500:
        return False
    return None


class Credit:
    """One reserved credit. Settle it exactly once; later settlements are ignored."""

    __slots__ = ("_budget", "_settled")

    def __init__(self, budget: CreditBudget) -> None:
        self._budget = budget
        self._settled = False

    @property
    def settled(self) -> bool:
        """Whether the credit was committed, released or kept."""
        return self._settled

    def settle(self, charged: bool | None) -> None:
        """Commit (True), release (False) or keep (None, charge unknown): see :func:`charge_of`."""
        if self._settled:
            return
        self._settled = True
        self._budget._settle(charged)

    def commit(self) -> None:
        """The answer was a success: the credit is spent."""
        self.settle(True)

    def release(self) -> None:
        """The answer cannot have cost a credit: give it back."""
        self.settle(False)

    def keep(self) -> None:
        """The charge is unknown: count the credit as spent."""
        self.settle(None)


class CreditBudget:
    """At most ``max_credits`` credits, reserved before each attempt (see the module).

    One event loop; not thread-safe. Counters: ``spent`` (committed), ``unknown`` (kept),
    ``reserved`` (attempts in flight), ``remaining`` (free to reserve now).
    """

    def __init__(self, max_credits: int) -> None:
        if isinstance(max_credits, bool) or not isinstance(max_credits, int) or max_credits < 0:
            raise ConfigurationError(f"max_credits must be an int >= 0, got {max_credits!r}")
        self.max_credits = max_credits
        self.spent = 0
        self.unknown = 0
        self.reserved = 0
        self._waiters: deque[asyncio.Future[Credit]] = deque()

    @property
    def remaining(self) -> int:
        """Credits neither spent, kept nor reserved."""
        return self.max_credits - self.spent - self.unknown - self.reserved

    @property
    def exhausted(self) -> bool:
        """True once spent and kept credits use the whole budget: nothing more can start."""
        return self.spent + self.unknown >= self.max_credits

    def _error(self) -> CreditBudgetExceededError:
        used = self.spent + self.unknown
        detail = f"{self.spent} charged" + (
            f", {self.unknown} with an unknown charge" if self.unknown else ""
        )
        return CreditBudgetExceededError(
            f"credit budget of {self.max_credits} used up ({detail}); "
            "no request was started beyond it",
            max_credits=self.max_credits,
            spent=used,
        )

    async def reserve(self) -> Credit:
        """Reserve a credit for one attempt, waiting (FIFO) while the rest are in flight.

        Raises CreditBudgetExceededError when the budget is used up. Cancelling a waiting
        caller reserves nothing.
        """
        if self.exhausted:
            raise self._error()
        if not self._waiters and self.remaining > 0:
            self.reserved += 1
            return Credit(self)
        waiter: asyncio.Future[Credit] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed a credit just as we were cancelled: give it back to the next waiter.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().release()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _settle(self, charged: bool | None) -> None:
        self.reserved -= 1
        if charged is True:
            self.spent += 1
        elif charged is None:
            self.unknown += 1
        self._wake()

    def _wake(self) -> None:
        if self.exhausted:
            error = self._error()
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(copy.copy(error))
            return
        while self._waiters and self.remaining > 0:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.reserved += 1
                waiter.set_result(Credit(self))

    def __repr__(self) -> str:
        return (
            f"CreditBudget(max_credits={self.max_credits}, spent={self.spent}, "
            f"unknown={self.unknown}, reserved={self.reserved})"
        )
