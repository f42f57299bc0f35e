"""One run of a crawl, shared by both crawls: the output and its state, the client's
counters, the lineage of stored records, and the tail that ends every run the same way.

Resume: with a built-in file sink, a crawl reads back what an earlier run stored (see
:mod:`keyapi_async.bulk.state`); a sink of the user's own can take part through the optional
``write_missing`` and ``resume_ids`` methods (see :class:`~keyapi_async.Sink`).

Output safety: a built-in file sink's output is checked and locked (``OUT.lock``, see
:mod:`keyapi_async.bulk.filelock`) before the first request, for the crawl's life, so two
crawls can never write one output. A write that fails (a full disk) stops the crawl at
once with :class:`~keyapi_async.OutputWriteError`, the state file still gets its final
status, and a resume after freeing space loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TypeVar

import msgspec

from ..client.client import KeyAPIClient
from ..pipeline.errors import (
    InvalidParameterError,
    KeyAPIError,
    OutputError,
    OutputLockedError,
    OutputWriteError,
)
from .idset import CompactIdSet
from .report import CrawlReport, ProgressCallback, ended_by, reason
from .sinks.base import FileSink, Sink, output_write_error
from .state import CrawlState, MissingLog, load_state, save_state

__all__ = ["DEFAULT_STOP_GRACE", "CrawlRun", "Outputs", "with_lineage"]

T = TypeVar("T")

#: Seconds in-flight requests get to finish after a stop is requested.
DEFAULT_STOP_GRACE = 10.0


class _ClientCounters:
    """The client's counters at the start, so the report can show this crawl's share;
    and the learned rate, carried from one run of a crawl to the next in its state."""

    def __init__(self, client: KeyAPIClient) -> None:
        self.client = client
        stats = client.stats
        self.start = (
            stats.requests, stats.retries, stats.rate_limited, stats.cancelled_on_wire
        )

    def update(self, report: CrawlReport) -> None:
        stats = self.client.stats
        report.requests = stats.requests - self.start[0]
        report.retries = stats.retries - self.start[1]
        report.rate_limited = stats.rate_limited - self.start[2]
        report.in_flight = stats.cancelled_on_wire - self.start[3]

    async def resume_rate(self, outputs: Outputs) -> None:
        """Start a ``qps="auto"`` client from the rate the previous run learned."""
        previous = outputs.previous
        if previous is not None and previous.learned_qps:
            outputs.state.learned_qps = previous.learned_qps
            await self.client._seed_rate(previous.learned_qps)

    def keep_rate(self, outputs: Outputs) -> None:
        if self.client.stats.learned_qps is not None:
            outputs.state.learned_qps = self.client.stats.learned_qps


#: ids of the sinks crawls are writing to right now (one crawl per sink object)
_IN_USE: set[int] = set()


class Outputs:
    """The sink plus, for built-in file sinks, the lock, the state file and the
    missing-ids journal. ``open`` checks and locks; ``close`` always releases."""

    def __init__(self, sink: Sink, kind: str, params: dict[str, Any]) -> None:
        self.sink = sink
        self.file = sink if isinstance(sink, FileSink) else None
        self.state = CrawlState(kind=kind, params=params)
        self.missing: MissingLog | None = None
        #: the state a previous run left, when resuming
        self.previous: CrawlState | None = None
        self.write_missing = getattr(sink, "write_missing", None)
        self._took_lock = False
        self._registered = False
        if self.file is not None:
            path = self.file.path
            self.missing = MissingLog(path.with_name(path.name + ".missing.txt"))

    @property
    def output(self) -> str | None:
        return None if self.file is None else str(self.file.path)

    def open(self, resume: bool) -> None:
        """Check and lock the output, and check a resume continues the same crawl; with
        ``resume=False``, remove what a previous run wrote. Before any request."""
        if id(self.sink) in _IN_USE:
            raise OutputLockedError(f"{self.sink!r} is already used by a running crawl")
        _IN_USE.add(id(self.sink))
        self._registered = True
        try:
            self._open_file(resume)
        except BaseException:
            self.release()
            raise

    def _open_file(self, resume: bool) -> None:
        if self.file is None:
            return
        assert self.missing is not None
        if not self.file.locked:
            self.file.acquire(resume=resume)
            self._took_lock = True
        try:
            previous = load_state(self.file.state_path)
        except ValueError as exc:
            raise OutputError(
                f"{exc}; move it away, or overwrite the output with --no-resume "
                "(resume=False)", path=str(self.file.path),
            ) from None
        if not resume:
            self.file.discard()
            self.missing.discard()
            return
        if previous is not None and (
            previous.kind != self.state.kind or previous.params != self.state.params
        ):
            raise InvalidParameterError(
                f"{self.file.path} holds another crawl ({_describe(previous)}), not this "
                f"one ({_describe(self.state)}): choose another output, or overwrite it with "
                "--no-resume (resume=False)"
            )
        self.previous = previous

    async def done_ids(self) -> CompactIdSet:
        """The ids a resumed details crawl skips: stored or recorded missing."""
        done = CompactIdSet()
        if self.file is not None:
            assert self.missing is not None
            if self.file.exists():
                done.update(i for i in self.file.recover() if i is not None)
            done.update(self.missing.recover())
            return done
        resume_ids = getattr(self.sink, "resume_ids", None)
        if resume_ids is not None:
            async for vid in resume_ids():
                done.add(vid)
        return done

    def stored_count(self) -> int:
        """Records already in a built-in sink's output (repairing a torn tail)."""
        if self.file is None or not self.file.exists():
            return 0
        return sum(1 for _ in self.file.recover())

    def start(self) -> None:
        """Record the run as started (status "running"); before any request."""
        try:
            self.save()
        except OSError as exc:
            assert self.file is not None
            raise output_write_error(self.file.state_path, exc) from exc

    def save(self) -> None:
        if self.file is not None:
            save_state(self.file.state_path, self.state)

    async def store(self, records: Sequence[Any]) -> None:
        """Write records; OutputWriteError if the sink cannot (a full disk)."""
        try:
            await self.sink.write(records)
        except OSError as exc:
            target = self.file.path if self.file is not None else self.sink
            raise output_write_error(target, exc) from exc

    async def store_missing(self, ids: Sequence[str]) -> None:
        """Record the ids the API does not know: journal and/or the sink's write_missing."""
        try:
            if self.missing is not None:
                self.missing.append(ids)
            if self.write_missing is not None:
                await self.write_missing(ids)
        except OSError as exc:
            target = self.missing.path if self.missing is not None else self.sink
            raise output_write_error(target, exc) from exc

    async def close(self, report: CrawlReport, status: str) -> OutputWriteError | None:
        """Close the sink, write the final state, release the lock. Never raises for a
        failed write: returns the error (the caller raises it unless another is on its
        way), after recording it in the report and the state."""
        error: OutputWriteError | None = None
        try:
            try:
                await self.sink.close()
            except OSError as exc:
                target = self.file.path if self.file is not None else self.sink
                error = output_write_error(target, exc)
                error.__cause__ = exc
            finally:
                if self.missing is not None:
                    self.missing.close()
            if error is not None:
                status = "aborted"
                if report.aborted is None:
                    report.aborted = reason(error)
            self.state.status = status
            self.state.summary = report.to_dict()
            try:
                self.save()
            except OSError as exc:
                assert self.file is not None
                if error is None:
                    error = output_write_error(self.file.state_path, exc)
                    error.__cause__ = exc
        finally:
            self.release()
        return error

    def release(self) -> None:
        if self._took_lock and self.file is not None:
            self.file.release()
            self._took_lock = False
        if self._registered:
            _IN_USE.discard(id(self.sink))
            self._registered = False


def _describe(state: CrawlState) -> str:
    """A crawl's kind and parameters in words, for the resume-conflict message."""
    params = state.params
    if state.kind == "ranking":
        fields = {"1": "views", "2": "sales"}
        periods = {"1": "day", "2": "week", "3": "month"}
        text = (
            f"ranking {params.get('date')} {params.get('region')} by "
            f"{fields.get(str(params.get('video_rank_field')), '?')} per "
            f"{periods.get(str(params.get('rank_type')), '?')}"
        )
        extra = [f"{k}={params[k]}" for k in ("product_category_id", "created_by_ai")
                 if k in params]
        if extra:
            text += " " + " ".join(extra)
    else:
        text = "video details"
    sink = str(params.get("format", "")).removesuffix("Sink").lower()
    return f"{text}, {sink}" if sink else text


def _stamp(records: Iterable[Any], request_id: str | None) -> None:
    """Set the lineage fields of one answer's records (a batch: 10 at most, a page: its
    size), with the time the crawl received it."""
    fetched_at = datetime.now(timezone.utc)
    for record in records:
        record.fetched_at = fetched_at
        record.request_id = request_id


def with_lineage(
    records: list[Any], request_id: str | None, lineage: bool, cached: bool
) -> list[Any]:
    """The records to store, with lineage or without. Fresh records are stamped in place.
    Records served by the client's cache are shared with it, so they are never changed:
    one a crawl stamped when it fetched it keeps that (true) lineage, one fetched by
    another call gets a copy stamped now (``request_id`` None, the answer's is unknown);
    without lineage, a stamped one is copied without it."""
    if not cached:
        if lineage:
            _stamp(records, request_id)
        return records
    unset = msgspec.UNSET
    if lineage:
        now = datetime.now(timezone.utc)
        return [
            r if r.fetched_at is not unset
            else msgspec.structs.replace(r, fetched_at=now, request_id=None)
            for r in records
        ]
    return [
        r if r.fetched_at is unset
        else msgspec.structs.replace(r, fetched_at=unset, request_id=unset)
        for r in records
    ]




class CrawlRun:
    """One run of a crawl, from its output's lock to its final state.

    :meth:`open` checks and locks the output before any request; ``async with run:`` then
    holds the crawl's requests and writes. However the block ends (the crawl's own
    :meth:`end`, an error, a cancellation such as a second Ctrl-C), the client's counters
    go to the report, the output is closed, its state written with the final status and
    the lock released. An exception nobody expected (a custom sink's own error, a
    cancellation) is recorded as "aborted" or "interrupted", after ``on_abort`` has
    accounted for the ids it left, and carries the partial report as ``exc.report``.
    """

    def __init__(
        self, client: KeyAPIClient, sink: Sink, report: CrawlReport, params: dict[str, Any],
        lineage: bool,
    ) -> None:
        self.started = time.monotonic()
        self.report = report
        self.counters = _ClientCounters(client)
        # What a resume must match: the query, the output's format, and lineage (a resume
        # must not mix records with and without it).
        params = {**params, "format": type(sink).__name__}
        if not lineage:
            params["lineage"] = False
        self.outputs = Outputs(sink, report.kind, params)
        self.status = "running"
        #: accounts for the ids an unexpected exception left (the details crawl's)
        self.on_abort: Callable[[], None] | None = None
        self._close_error: OutputWriteError | None = None

    async def open(self, resume: bool, prepare: Callable[[Outputs], Awaitable[T]]) -> T:
        """Check and lock the output, ``prepare`` the run from it (what is done already),
        record the run as started; before any request. Returns what ``prepare`` returned."""
        outputs = self.outputs
        outputs.open(resume)
        try:
            prepared = await prepare(outputs)
            outputs.start()
        except BaseException:
            outputs.release()
            raise
        self.report.output = outputs.output
        await self.counters.resume_rate(outputs)
        return prepared

    def progress(self, on_progress: ProgressCallback | None) -> None:
        """The report is live: update it and tell ``on_progress``."""
        self.counters.update(self.report)
        self.report.elapsed = time.monotonic() - self.started
        if on_progress is not None:
            on_progress(self.report)

    def end(self, error: str | None, stopped: bool, status: str) -> None:
        """How the run ended: aborted by ``error``, interrupted by a stop, or ``status``."""
        if error is not None:
            self.report.aborted = error
            status = "aborted"
        elif stopped:
            self.report.aborted = "interrupted"
            status = "interrupted"
        self.status = status

    async def __aenter__(self) -> CrawlRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        report = self.report
        try:
            if exc is not None:
                if self.status == "running":
                    self.status, report.aborted = ended_by(exc, report.aborted)
                    if self.on_abort is not None:
                        self.on_abort()
                exc.report = report  # type: ignore[attr-defined]
        finally:
            self.counters.update(report)
            self.counters.keep_rate(self.outputs)
            report.elapsed = time.monotonic() - self.started
            self._close_error = await self.outputs.close(report, self.status)

    def result(self, error: KeyAPIError | None) -> CrawlReport:
        """The report; or the error that ended the run (else the output's own, from
        closing it), raised with the report as ``err.report``."""
        error = error or self._close_error
        if error is not None:
            error.report = self.report  # type: ignore[attr-defined]
            raise error
        return self.report
