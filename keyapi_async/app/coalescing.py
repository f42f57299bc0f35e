"""Coalescing: concurrent id lookups share requests of up to 10 ids.

A web app's handlers each ask for one or two videos; sent as they come, every handler
call costs a credit. :class:`Coalescer` gathers the ids of concurrent callers into shared
batches, sent through an injected ``fetch(ids) -> Fetched`` (the client's one request
pipeline), so N handlers asking one id each cost about N / 10 credits.

Guarantees:

* **Batching.** Ids wait at most ``window`` seconds (default 5 ms) or until ``batch_size``
  (10) are waiting, whichever comes first, then leave together, oldest first. While
  ``max_in_flight`` fetches are already running, ids keep gathering: under load, batches
  leave full and the window only costs latency when the API is idle.
* **Once on the wire.** An id is fetched once while a fetch for it is queued or running;
  later callers join it. (After the answer, a new ask fetches again: freshness across
  time is the cache's job, not this one's.)
* **Own results.** Each caller gets a list aligned with the ids it passed (its order, its
  repeats): the record, or None for an id the API does not know. An error reaches only the
  callers with an id in the failed batch (or the id of a per-id error); a caller raises
  the first error one of its ids meets, as its own copy.
* **Fatal errors.** An error with ``fatal`` set (401, 402, credit budget) fails every id
  waiting when it arrives, queued or in flight, and drops the queue: no new fetch starts
  for them. Calls made afterwards start afresh (a topped-up account works again).
* **Cancellation.** Cancelling a caller never cancels another caller's ids: fetches run in
  tasks of their own that no caller awaits directly (the shared request is shielded).
  Ids still queued that every caller has abandoned are dropped unsent. A batch already
  handed to ``fetch`` whose callers are all gone runs to its end by default; with
  ``cancel_abandoned`` it is cancelled when that predicate says so (the client cancels it
  unless its request is on the wire and a cache will keep the paid answer), and the
  caller that left last waits for the cancellation to finish, so no work it alone wanted
  outlives it.

Single event loop, no locks: every state change happens between awaits.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from ..pipeline.errors import ConfigurationError, KeyAPIError
from .events import BatchCoalesced, Event

__all__ = ["DEFAULT_WINDOW", "Coalescer", "Fetched"]

#: Seconds an id may wait for others before its batch leaves anyway.
DEFAULT_WINDOW: Final = 0.005

R = TypeVar("R")


@dataclass(frozen=True)
class Fetched(Generic[R]):
    """What ``fetch`` returns for one batch.

    ``records`` maps the ids the API knew to their record; ``errors`` maps ids that failed
    alone (a record that would not decode) to their error. An asked id in neither is
    unknown to the API. A failure of the whole batch is raised by ``fetch`` instead.
    """

    records: Mapping[str, R]
    errors: Mapping[str, BaseException] = field(default_factory=dict)


class _Entry:
    """One id on its way: the future its callers wait on, and how many wait."""

    __slots__ = ("batch", "future", "queued", "waiters")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self.waiters = 0
        self.queued = True
        self.batch: _Batch | None = None  # set when the id leaves in a batch


class _Batch:
    """Ids sent together, and the task fetching them."""

    __slots__ = ("entries", "ids", "task")

    def __init__(self, ids: list[str], entries: list[_Entry]) -> None:
        self.ids = ids
        self.entries = entries
        self.task: asyncio.Task[None] | None = None


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
        future.exception()  # retrieved: no "exception never retrieved" for abandoned ids


def _own_copy(error: BaseException) -> BaseException:
    """A copy for one caller, so that callers sharing a failure never share a traceback."""
    try:
        return copy.copy(error)
    except Exception:  # an exception type that cannot be copied: share it
        return error


class Coalescer(Generic[R]):
    """Merges concurrent :meth:`get` calls into batches sent through ``fetch`` (see module).

    Args:
        fetch: ``async fetch(ids) -> Fetched``; raises for a batch that failed as a whole.
        window: Seconds the first queued id waits for company (>= 0).
        batch_size: Ids per fetch (the API takes 10).
        max_in_flight: Cap on fetches running at once: an int, a callable read at each
            dispatch (the client's lets a batch leave only when no other waits for a rate
            limiter permit, and calls :meth:`wake` when one gets it), or None for no cap.
        emit: Receives a :class:`~keyapi_async.events.BatchCoalesced` per batch sent.
        cancel_abandoned: Called with a batch's fetch task when every caller of the batch
            has left; True cancels the fetch. None (the default): never, the batch runs to
            its end.
    """

    def __init__(
        self,
        fetch: Callable[[list[str]], Awaitable[Fetched[R]]],
        *,
        window: float = DEFAULT_WINDOW,
        batch_size: int = 10,
        max_in_flight: int | Callable[[], int] | None = None,
        emit: Callable[[Event], None] | None = None,
        cancel_abandoned: Callable[[asyncio.Task[None]], bool] | None = None,
    ) -> None:
        if not (isinstance(window, (int, float)) and math.isfinite(window) and window >= 0):
            raise ValueError(f"window must be a number of seconds >= 0, got {window!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if max_in_flight is None:
            self._cap: Callable[[], int] = lambda: 1 << 62
        elif callable(max_in_flight):
            self._cap = max_in_flight
        elif isinstance(max_in_flight, int) and not isinstance(max_in_flight, bool) \
                and max_in_flight >= 1:
            self._cap = lambda: max_in_flight
        else:
            raise ValueError(f"max_in_flight must be an int >= 1, a callable or None, "
                             f"got {max_in_flight!r}")
        self._fetch = fetch
        self.window = float(window)
        self.batch_size = batch_size
        self._emit = emit
        self._cancel_abandoned = cancel_abandoned
        self._entries: dict[str, _Entry] = {}  # every id queued or in flight
        self._queue: dict[str, _Entry] = {}  # ids waiting for a batch, oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._due = False  # the oldest queued id has waited its window
        self._generation = 0  # bumped by a fatal error: older batches' errors are spent
        self._closed: BaseException | None = None
        #: Batches sent so far.
        self.batches = 0
        #: Id asks served by a fetch another ask had already opened (requests saved).
        self.joined = 0

    @property
    def queued(self) -> int:
        """Ids waiting for a batch."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Fetches running."""
        return len(self._tasks)

    async def get(self, ids: Sequence[str]) -> list[R | None]:
        """The record of each id (None if unknown), aligned with ``ids``; see the module."""
        if self._closed is not None:
            raise _own_copy(self._closed)
        joined: dict[str, asyncio.Future[Any]] = {}
        try:
            for vid in ids:
                if vid not in joined:
                    joined[vid] = self._join(vid)
            self._pump()
            pending: set[asyncio.Future[Any]] = set(joined.values())
            while pending:
                # asyncio.wait never cancels what it waits on: a cancelled caller leaves
                # the shared futures (and the fetches behind them) to the other callers.
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                failed = {f for f in done if f.exception() is not None}
                if failed:
                    first = next(f for f in joined.values() if f in failed)
                    error = first.exception()
                    assert error is not None
                    own = _own_copy(error)
                    raise own from (error if own is not error else None)
            return [joined[vid].result() for vid in ids]
        finally:
            abandoned = {
                task for vid, future in joined.items()
                if (task := self._leave(vid, future)) is not None
            }
            if abandoned:
                # Shielded: a second cancellation of this caller still lets them finish.
                await asyncio.shield(asyncio.gather(*abandoned, return_exceptions=True))

    def wake(self) -> None:
        """Send what may leave now: call it when ``max_in_flight`` may have grown."""
        if self._closed is None:
            self._pump()

    async def drain(self) -> None:
        """Wait until no fetch runs (those whose callers all left included) and none is queued
        that could start: what a graceful shutdown waits for before :meth:`aclose`."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self, error: BaseException | None = None) -> None:
        """Fail every waiting id with ``error`` and stop the fetches; later gets raise it.

        Default error: :class:`~keyapi_async.ConfigurationError` ("client closed").
        """
        self._closed = error or ConfigurationError(
            "the client was closed while this lookup waited; create a new KeyAPIClient"
        )
        self._fail_all(self._closed)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals -------------------------------------------------------------------

    def _join(self, vid: str) -> asyncio.Future[Any]:
        entry = self._entries.get(vid)
        if entry is None:
            entry = _Entry(asyncio.get_running_loop().create_future())
            self._entries[vid] = entry
            self._queue[vid] = entry
        else:
            self.joined += 1
        entry.waiters += 1
        return entry.future

    def _leave(self, vid: str, future: asyncio.Future[Any]) -> asyncio.Task[None] | None:
        """One caller leaves ``vid``; returns the batch's fetch if this cancelled it."""
        entry = self._entries.get(vid)
        if entry is None or entry.future is not future:
            return None  # answered (or failed) and forgotten already
        entry.waiters -= 1
        if entry.waiters:
            return None
        if entry.queued:
            # Nobody wants it any more and it was never sent: drop it, spend nothing.
            del self._entries[vid]
            del self._queue[vid]
            future.cancel()
            if not self._queue:
                self._idle()
            return None
        batch = entry.batch
        if (
            self._cancel_abandoned is None or batch is None or batch.task is None
            or batch.task.done() or any(e.waiters for e in batch.entries)
            or not self._cancel_abandoned(batch.task)
        ):
            return None
        # Every caller of the batch left: forget its ids first, so that a new ask for one
        # of them opens a fresh entry instead of joining a fetch being cancelled.
        for other, other_entry in zip(batch.ids, batch.entries, strict=True):
            if self._entries.get(other) is other_entry:
                del self._entries[other]
        batch.task.cancel()
        return batch.task

    def _idle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = False

    def _expire(self) -> None:
        self._timer = None
        self._due = True
        self._pump()

    def _pump(self) -> None:
        """Send every batch that may leave now: full, or due, while the cap allows."""
        while self._queue and len(self._tasks) < self._cap():
            if len(self._queue) < self.batch_size and not self._due:
                break
            ids = list(itertools.islice(self._queue, self.batch_size))
            entries = [self._queue.pop(vid) for vid in ids]
            batch = _Batch(ids, entries)
            for entry in entries:
                entry.queued = False
                entry.batch = batch
            self.batches += 1
            if self._emit is not None:
                self._emit(BatchCoalesced(
                    ids=len(ids), asks=sum(e.waiters for e in entries),
                    full=len(ids) == self.batch_size,
                ))
            task = batch.task = asyncio.get_running_loop().create_task(
                self._run(ids, entries, self._generation)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not self._queue:
            self._idle()
        elif self._timer is None and not self._due:
            self._timer = asyncio.get_running_loop().call_later(self.window, self._expire)

    async def _run(self, ids: list[str], entries: list[_Entry], generation: int) -> None:
        try:
            outcome = await self._fetch(ids)
        except (Exception, asyncio.CancelledError) as exc:
            error: BaseException = exc
            if isinstance(exc, asyncio.CancelledError):
                if self._closed is None:
                    # Abandoned by every caller (see _leave): nobody waits for these ids.
                    for entry in entries:
                        entry.future.cancel()
                    raise
                error = self._closed  # aclose: the waiting callers get its error
            for entry in entries:
                _settle(entry.future, None, error)
            if isinstance(error, KeyAPIError) and error.fatal and generation == self._generation:
                self._fail_all(error)
        else:
            for vid, entry in zip(ids, entries, strict=True):
                _settle(entry.future, outcome.records.get(vid), outcome.errors.get(vid))
        finally:
            for vid, entry in zip(ids, entries, strict=True):
                if self._entries.get(vid) is entry:
                    del self._entries[vid]
            # Done callbacks run later: leave the task set now, so the cap sees a free slot.
            self._tasks.discard(asyncio.current_task())
            if self._closed is None:
                self._pump()

    def _fail_all(self, error: BaseException) -> None:
        """Fail every id waiting now and forget them: a fatal error halts everything."""
        self._generation += 1
        for entry in self._entries.values():
            _settle(entry.future, None, error)
        self._entries.clear()
        self._queue.clear()
        self._idle()
