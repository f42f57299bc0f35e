"""Coalescing: concurrent id lookups share requests of up to 10 ids.

A web app's handlers each ask for one or two videos; sent as they come, every handler
call costs a credit. :class:`Coalescer` gathers the ids of concurrent callers into shared
batches, sent through an injected ``fetch(ids) -> Fetched`` (the client's one request
pipeline), so N handlers asking one id each cost about N / 10 credits.

Guarantees:

* **Batching.** Ids wait at most ``window`` seconds (default 5 ms) or until ``batch_size``
  (10) are waiting, whichever comes first, then leave together, oldest first. While
  ``partial_in_flight`` fetches are already running, ids keep gathering: under load,
  batches leave full and the window only costs latency when the API is idle. A full
  batch has nothing left to gather: only ``max_in_flight`` holds it back.
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

How (the cost is per batch, not per id): an id queued or in flight maps to its batch,
so a later ask finds it with one lookup. A call's new ids top up the batch still gathering
(they would have joined it anyway), then leave as full batches of their own straight
away; only the remainder gathers. Each call waits on one future, woken by a countdown of
its batches (or its first failure), and reads its records off its batches' answers.

Single event loop, no locks: every state change happens between awaits.
"""

from __future__ import annotations

import asyncio
import collections
import copy
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


class _Caller:
    """One :meth:`Coalescer.get` call: one future for all its ids, woken when the last of
    its batches is answered or the first fails (a countdown: no future per id)."""

    __slots__ = ("batches", "failed", "future", "ids", "remaining")

    def __init__(self, future: asyncio.Future[None], ids: Sequence[str]) -> None:
        self.future = future
        self.ids = ids
        self.batches: list[_Batch] = []  # every batch holding one of its ids, each once
        self.remaining = 0  # of those, not answered yet
        self.failed = False


class _Batch:
    """Ids that leave together (or gather to): who waits for them, the fetch, the answer."""

    __slots__ = (
        "askers", "callers", "done", "error", "errors", "extra", "ids", "records", "sent", "task",
    )

    def __init__(self, ids: list[str], caller: _Caller) -> None:
        self.ids = ids
        #: The caller that queued each id (None once it left), aligned with ``ids``.
        self.askers: list[_Caller | None] = [caller] * len(ids)
        #: Callers that joined an id queued by another, by id (None: nobody did).
        self.extra: dict[str, list[_Caller]] | None = None
        #: Each caller waiting for some of these ids, and for how many.
        self.callers: dict[_Caller, int] = {}
        self.sent = False
        self.task: asyncio.Task[None] | None = None
        self.done = False
        self.records: Mapping[str, Any] = {}
        self.errors: Mapping[str, BaseException] = {}
        self.error: BaseException | None = None

    def wanted_by(self, caller: _Caller, errors: Mapping[str, BaseException]) -> bool:
        """Whether ``caller`` waits for one of ``errors``' ids."""
        extra = self.extra or {}
        return any(
            vid in errors and (asker is caller or caller in extra.get(vid, ()))
            for vid, asker in zip(self.ids, self.askers, strict=True)
        )


def _finish(
    batch: _Batch, records: Mapping[str, Any], errors: Mapping[str, BaseException],
    error: BaseException | None,
) -> None:
    """Record a batch's answer; count it off for each of its callers, and wake those it
    completes or fails."""
    if batch.done:
        return
    batch.done = True
    batch.records, batch.errors, batch.error = records, errors, error
    for caller in batch.callers:
        caller.remaining -= 1
        if error is not None or (errors and batch.wanted_by(caller, errors)):
            caller.failed = True
        if (caller.failed or not caller.remaining) and not caller.future.done():
            caller.future.set_result(None)


def _first_error(caller: _Caller) -> BaseException:
    """Of the failures known now, the first one of ``caller``'s ids meets, in its order."""
    where = {vid: batch for batch in caller.batches if batch.done for vid in batch.ids}
    for vid in caller.ids:
        batch = where.get(vid)
        if batch is not None:
            error = batch.error if batch.error is not None else batch.errors.get(vid)
            if error is not None:
                return error
    raise AssertionError("a failed caller without an error")  # pragma: no cover


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
            dispatch, or None for no cap.
        partial_in_flight: The cap under which a batch that is not full may leave (its
            window passed); above it, it keeps gathering ids. Same forms; None: the same
            as ``max_in_flight``. (The client's lets such a batch leave only when no other
            waits for a rate limiter permit, and calls :meth:`wake` when one gets it.)
        emit: Receives a :class:`~keyapi_async.app.events.BatchCoalesced` per batch sent.
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
        partial_in_flight: int | Callable[[], int] | None = None,
        emit: Callable[[Event], None] | None = None,
        cancel_abandoned: Callable[[asyncio.Task[None]], bool] | None = None,
    ) -> None:
        if not (isinstance(window, (int, float)) and math.isfinite(window) and window >= 0):
            raise ValueError(f"window must be a number of seconds >= 0, got {window!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self._cap = _as_cap(max_in_flight, "max_in_flight")
        self._partial_cap = (
            self._cap if partial_in_flight is None
            else _as_cap(partial_in_flight, "partial_in_flight")
        )
        self._fetch = fetch
        self.window = float(window)
        self.batch_size = batch_size
        self._emit = emit
        self._cancel_abandoned = cancel_abandoned
        self._entries: dict[str, _Batch] = {}  # every id queued or in flight: its batch
        self._pending: collections.deque[_Batch] = collections.deque()  # full, not sent
        self._open: _Batch | None = None  # the batch still gathering ids (not full)
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
        gathering = 0 if self._open is None else len(self._open.ids)
        return gathering + sum(len(batch.ids) for batch in self._pending)

    @property
    def in_flight(self) -> int:
        """Fetches running."""
        return len(self._tasks)

    async def get(self, ids: Sequence[str]) -> list[R | None]:
        """The record of each id (None if unknown), aligned with ``ids``; see the module."""
        if self._closed is not None:
            raise _own_copy(self._closed)
        caller = _Caller(asyncio.get_running_loop().create_future(), ids)
        try:
            entries = self._entries
            unique = list(dict.fromkeys(ids))
            fresh = [vid for vid in unique if vid not in entries]
            if len(fresh) != len(unique):
                for vid in unique:
                    batch = entries.get(vid)
                    if batch is not None:  # queued or on the wire already: join it
                        self.joined += 1
                        if batch.extra is None:
                            batch.extra = {}
                        batch.extra.setdefault(vid, []).append(caller)
                        _add(batch, caller, 1)
            if fresh:
                self._enqueue(fresh, caller)
            self._pump()
            if caller.remaining:
                # The future is this caller's own: cancelling the caller cancels only it,
                # never the shared fetches (they run in tasks no caller awaits).
                await caller.future
            if caller.failed:
                error = _first_error(caller)
                own = _own_copy(error)
                raise own from (error if own is not error else None)
            batches = caller.batches
            if len(batches) == 1:
                records = batches[0].records
            else:
                records = {}
                for batch in batches:
                    records.update(batch.records)
            return [records.get(vid) for vid in ids]
        finally:
            if caller.remaining:  # left before every batch was answered (failed, cancelled)
                abandoned = {
                    task for batch in caller.batches
                    if not batch.done and (task := self._leave(batch, caller)) is not None
                }
                if abandoned:
                    # Shielded: a second cancellation of this caller still lets them finish.
                    await asyncio.shield(asyncio.gather(*abandoned, return_exceptions=True))

    def wake(self) -> None:
        """Send what may leave now: call it when a cap may have grown."""
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

    def _enqueue(self, ids: list[str], caller: _Caller) -> None:
        """Queue ids nobody asked for yet: first into the batch still gathering (they would
        have joined it anyway), then in full batches that may leave at once; the
        remainder gathers."""
        size, entries = self.batch_size, self._entries
        start = 0
        gathering = self._open
        if gathering is not None:
            top_up = ids[: size - len(gathering.ids)]
            start = len(top_up)
            gathering.ids += top_up
            gathering.askers += [caller] * start
            _add(gathering, caller, start)
            entries.update(dict.fromkeys(top_up, gathering))
            if len(gathering.ids) == size:
                self._pending.append(gathering)
                self._open = None
        for at in range(start, len(ids), size):
            chunk = ids[at : at + size]
            batch = _Batch(chunk, caller)
            _add(batch, caller, len(chunk))
            entries.update(dict.fromkeys(chunk, batch))
            if len(chunk) == size:
                self._pending.append(batch)
            else:
                self._open = batch

    def _leave(self, batch: _Batch, caller: _Caller) -> asyncio.Task[None] | None:
        """``caller`` leaves ``batch``; returns the batch's fetch if this cancelled it."""
        if batch.callers.pop(caller, None) is None:
            return None
        if not batch.sent:
            # Ids nobody wants any more were never sent: drop them, spend nothing.
            if batch.callers:
                self._drop_ids_of(batch, caller)
            else:
                self._forget(batch)
                batch.ids, batch.askers = [], []
                if batch is self._open:
                    self._open = None
                else:
                    self._pending.remove(batch)
            if self._open is None and not self._pending:
                self._idle()
            return None
        if (
            self._cancel_abandoned is None or batch.task is None or batch.task.done()
            or batch.callers or not self._cancel_abandoned(batch.task)
        ):
            return None
        # Every caller of the batch left: forget its ids first, so that a new ask for one
        # of them opens a fresh batch instead of joining a fetch being cancelled.
        self._forget(batch)
        batch.task.cancel()
        return batch.task

    def _drop_ids_of(self, batch: _Batch, caller: _Caller) -> None:
        """Drop from an unsent batch the ids only ``caller`` (leaving) wanted."""
        extra = batch.extra or {}
        kept: list[str] = []
        askers: list[_Caller | None] = []
        entries = self._entries
        for vid, asker in zip(batch.ids, batch.askers, strict=True):
            if asker is caller:
                asker = None
            joiners = extra.get(vid)
            if joiners and caller in joiners:
                joiners.remove(caller)
            if asker is not None or joiners:
                kept.append(vid)
                askers.append(asker)
            elif entries.get(vid) is batch:
                del entries[vid]
        batch.ids, batch.askers = kept, askers

    def _forget(self, batch: _Batch) -> None:
        entries = self._entries
        for vid in batch.ids:
            if entries.get(vid) is batch:
                del entries[vid]

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
        pending, tasks = self._pending, self._tasks
        while True:
            if pending:  # full: nothing to wait for but a free slot
                if len(tasks) >= self._cap():
                    break
                batch = pending.popleft()
            elif (
                self._open is not None and self._due
                and len(tasks) < min(self._cap(), self._partial_cap())
            ):
                batch, self._open = self._open, None
            else:
                break
            batch.sent = True
            self.batches += 1
            if self._emit is not None:
                self._emit(BatchCoalesced(
                    ids=len(batch.ids), asks=sum(batch.callers.values()),
                    full=len(batch.ids) == self.batch_size,
                ))
            task = batch.task = asyncio.get_running_loop().create_task(
                self._run(batch, self._generation)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._open is None and not pending:
            self._idle()
        elif self._timer is None and not self._due:
            self._timer = asyncio.get_running_loop().call_later(self.window, self._expire)

    async def _run(self, batch: _Batch, generation: int) -> None:
        try:
            outcome = await self._fetch(batch.ids)
        except (Exception, asyncio.CancelledError) as exc:
            error: BaseException = exc
            if isinstance(exc, asyncio.CancelledError):
                if self._closed is None:
                    # Abandoned by every caller (see _leave), or cancelled from outside:
                    # whoever still waits sees the cancellation.
                    _finish(batch, {}, {}, asyncio.CancelledError())
                    raise
                error = self._closed  # aclose: the waiting callers get its error
            _finish(batch, {}, {}, error)
            if isinstance(error, KeyAPIError) and error.fatal and generation == self._generation:
                self._fail_all(error)
        else:
            _finish(batch, outcome.records, outcome.errors, None)
        finally:
            self._forget(batch)
            # Done callbacks run later: leave the task set now, so the cap sees a free slot.
            self._tasks.discard(asyncio.current_task())
            if self._closed is None:
                self._pump()

    def _fail_all(self, error: BaseException) -> None:
        """Fail every id waiting now and forget them: a fatal error halts everything."""
        self._generation += 1
        for batch in {id(b): b for b in self._entries.values()}.values():
            _finish(batch, {}, {}, error)
        self._entries.clear()
        self._pending.clear()
        self._open = None
        self._idle()


def _as_cap(value: int | Callable[[], int] | None, name: str) -> Callable[[], int]:
    if value is None:
        return lambda: 1 << 62
    if callable(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return lambda: value
    raise ValueError(f"{name} must be an int >= 1, a callable or None, got {value!r}")


def _add(batch: _Batch, caller: _Caller, ids: int) -> None:
    """``caller`` waits for ``ids`` more of ``batch``'s ids."""
    if caller in batch.callers:
        batch.callers[caller] += ids
    else:
        batch.callers[caller] = ids
        caller.batches.append(batch)
        caller.remaining += 1
