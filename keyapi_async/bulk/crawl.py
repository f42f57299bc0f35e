"""Bulk crawls: ids (or a ranking list) in, a dataset out, each credit paid once.

:func:`crawl_video_details` streams ids through :meth:`KeyAPIClient.iter_detail_batches`
and :func:`crawl_video_ranking` walks :meth:`KeyAPIClient.iter_ranking_pages`; both write
each answer to a sink as it arrives and account for every id in a :class:`CrawlReport`.

Accounting (details): every unique id of the input ends in exactly one of
``skipped_resumed`` (done by an earlier run), ``fetched``, ``missing`` (unknown to the
API), ``failed`` (id -> reason) or ``not_attempted``, so
``requested == skipped_resumed + fetched + missing + len(failed) + not_attempted``.

Resume: with a built-in file sink, the crawl reads back the ``video_id`` of every record
already in the output plus the ids recorded missing (``OUT.missing.txt``) and skips them;
a ranking crawl starts after the last page stored. See :mod:`keyapi_async.crawlstate`.
A sink of the user's own can take part through the optional ``write_missing`` and
``resume_ids`` methods (see :class:`~keyapi_async.Sink`).

Output safety: a built-in file sink's output is checked and locked (``OUT.lock``, see
:mod:`keyapi_async.filelock`) before the first request, for the crawl's life, so two
crawls can never write one output. A write that fails (a full disk) stops the crawl at
once with :class:`~keyapi_async.OutputWriteError`: the batch not stored is counted failed,
the state file still gets its final status, and a resume after freeing space loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Collection,
    Iterable,
    Sequence,
)
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from typing import Any, TypeVar

import msgspec

from ..client.client import DetailBatch, KeyAPIClient, RankingPage
from ..pipeline.errors import (
    InvalidParameterError,
    KeyAPIError,
    OutputError,
    OutputLockedError,
    OutputWriteError,
)
from ..pipeline.models import RankedVideo
from ..pipeline.validation import (
    MAX_PAGE_SIZE,
    check_max_pages,
    check_page,
    ranking_query,
    video_id,
)
from .idset import CompactIdSet
from .sinks.base import FileSink, Sink, output_write_error
from .state import CrawlState, MissingLog, load_state, save_state

__all__ = ["CrawlReport", "ProgressCallback", "crawl_video_details", "crawl_video_ranking"]

T = TypeVar("T")

#: Seconds in-flight requests get to finish after a stop is requested.
DEFAULT_STOP_GRACE = 10.0


@dataclass
class CrawlReport:
    """What a crawl did. Live during the crawl (``on_progress`` gets it), final after.

    ``credits_spent`` counts the successful answers the client saw. An answer the server
    charged but that arrived damaged (truncated, say) and was retried looks like a failure
    from the client's side, so the server's own count can be higher.
    ``requests``, ``retries`` and ``rate_limited`` are the client's counters over the crawl
    (they include any other call made concurrently on the same client).
    A crawl stopped by cancellation (a second Ctrl-C) raises the CancelledError with the
    partial report as ``exc.report``, ``aborted="interrupted"``.
    """

    #: unique ids in the input (details) or records stored (ranking)
    requested: int = 0
    fetched: int = 0
    missing: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    not_attempted: int = 0
    skipped_resumed: int = 0
    requests: int = 0
    credits_spent: int = 0
    retries: int = 0
    rate_limited: int = 0
    elapsed: float = 0.0
    #: ranking crawls: pages stored by this run, and whether the list is complete
    pages: int = 0
    complete: bool = False
    #: why the crawl ended early: "interrupted", or the error that aborted it
    aborted: str | None = None
    #: the output path (built-in sinks)
    output: str | None = None
    #: requests cancelled on the wire when the crawl was stopped: the server may have
    #: answered and charged them (their ids are counted not attempted, a resume asks again)
    in_flight: int = 0
    #: "videos" or "ranking": which fields of :meth:`to_dict` apply
    kind: str = "videos"

    @property
    def ok(self) -> bool:
        """True when every id was fetched or found missing (nothing failed or left over)."""
        return not self.failed and not self.not_attempted and self.aborted is None

    @property
    def accounted(self) -> int:
        """Ids with an outcome; equals ``requested`` once a details crawl has returned."""
        return (
            self.skipped_resumed + self.fetched + self.missing + len(self.failed)
            + self.not_attempted
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with ``failed`` as a count (the ids are in :attr:`failed`)."""
        data = asdict(self)
        data["failed"] = len(self.failed)
        data["ok"] = self.ok
        # `complete` is about a ranking list: named so a details crawl's summary cannot read
        # "complete: false" beside a state whose status is "complete".
        complete = data.pop("complete")
        pages = data.pop("pages")
        if self.kind == "ranking":
            data["list_complete"] = complete
            data["pages"] = pages
        return data


ProgressCallback = Callable[[CrawlReport], None]


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

    async def resume_rate(self, outputs: _Outputs) -> None:
        """Start a ``qps="auto"`` client from the rate the previous run learned."""
        previous = outputs.previous
        if previous is not None and previous.learned_qps:
            outputs.state.learned_qps = previous.learned_qps
            await self.client._seed_rate(previous.learned_qps)

    def keep_rate(self, outputs: _Outputs) -> None:
        if self.client.stats.learned_qps is not None:
            outputs.state.learned_qps = self.client.stats.learned_qps


class _Stopper:
    """Races each step of a crawl against a stop request, with a grace for in-flight work."""

    def __init__(self, stop: asyncio.Event | None, grace: float, on_stop: Callable[[], None]):
        self.stop = stop
        self.grace = grace
        self.on_stop = on_stop
        self.deadline: float | None = None

    @property
    def stopping(self) -> bool:
        return self.deadline is not None

    async def next(self, source: AsyncGenerator[T, None]) -> T:
        """The next item of ``source``; TimeoutError when the grace ran out (source closed)."""
        if self.stop is None:
            return await anext(source)
        loop = asyncio.get_running_loop()
        step: asyncio.Future[T] = asyncio.ensure_future(anext(source))
        waiter: asyncio.Future[Any] | None = None
        try:
            if self.deadline is None:
                waiter = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait({step, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if step.done():
                    return step.result()
                self.deadline = loop.time() + self.grace
                self.on_stop()
            await asyncio.wait({step}, timeout=max(0.0, self.deadline - loop.time()))
            if step.done():
                return step.result()
            raise TimeoutError("stop grace expired")
        finally:
            if waiter is not None:
                waiter.cancel()
            if not step.done():
                # Cancelling the step ends the generator: its in-flight requests are cancelled.
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)


#: ids of the sinks crawls are writing to right now (one crawl per sink object)
_IN_USE: set[int] = set()


class _Outputs:
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
                    report.aborted = _reason(error)
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


def _reason(exc: KeyAPIError) -> str:
    reason = f"{type(exc).__name__}: {exc.message}"
    if exc.status is not None:
        reason += f" (HTTP {exc.status})"
    if exc.request_id:
        reason += f" [request id {exc.request_id}]"
    return reason


class _Feed:
    """The crawl's view of the input: validates, drops repeats and ids already done.

    Handed to the client as its id source (with ``dedupe=False``); it can be stopped, and
    after an abort it is drained to count the ids never sent.
    """

    def __init__(self, done: CompactIdSet, report: CrawlReport) -> None:
        self.done = done
        # Compact (~8.5 bytes an id): the only structure of a crawl that grows with the input.
        self.seen = CompactIdSet()
        self.report = report
        self.position = 0
        self.handed = 0
        self.stopped = False
        self.error: InvalidParameterError | None = None

    def accept(self, value: object) -> str | None:
        """The id to send for ``value``, or None to skip it; stops the feed on a bad id."""
        position = self.position
        self.position += 1
        try:
            vid = video_id(value, position)
        except InvalidParameterError as exc:
            if self.error is None:
                self.error = exc
            self.stopped = True
            return None
        if not self.seen.add(vid):
            return None
        self.report.requested += 1
        if vid in self.done:
            # Each id reaches here once (seen filters repeats), so done needs no removal.
            self.report.skipped_resumed += 1
            return None
        return vid

    def count_rest(self, rest: Iterable[object]) -> None:
        """Count the unique new ids left in the input as not attempted (no requests)."""
        for value in rest:
            try:
                vid = video_id(value)
            except InvalidParameterError:
                continue
            if not self.seen.add(vid):
                continue
            self.report.requested += 1
            if vid in self.done:
                self.report.skipped_resumed += 1
            else:
                self.report.not_attempted += 1


class _SyncFeed(_Feed):
    def __init__(self, ids: Iterable[object], done: CompactIdSet, report: CrawlReport):
        super().__init__(done, report)
        self._it = iter(ids)

    def __iter__(self) -> _SyncFeed:
        return self

    def __next__(self) -> str:
        while not self.stopped:
            value = next(self._it)
            vid = self.accept(value)
            if vid is not None:
                self.handed += 1
                return vid
        raise StopIteration

    async def drain(self) -> None:
        self.count_rest(self._it)


class _AsyncFeed(_Feed):
    def __init__(self, ids: AsyncIterable[object], done: CompactIdSet, report: CrawlReport):
        super().__init__(done, report)
        self._it = aiter(ids)

    def __aiter__(self) -> _AsyncFeed:
        return self

    async def __anext__(self) -> str:
        while not self.stopped:
            value = await anext(self._it)
            vid = self.accept(value)
            if vid is not None:
                self.handed += 1
                return vid
        raise StopAsyncIteration

    async def drain(self) -> None:
        rest: list[object] = []
        async for value in self._it:
            rest.append(value)
            if len(rest) >= 10_000:
                self.count_rest(rest)
                rest.clear()
        self.count_rest(rest)


async def crawl_video_details(
    client: KeyAPIClient,
    ids: Iterable[str | int] | AsyncIterable[str | int],
    sink: Sink,
    resume: bool = True,
    on_progress: ProgressCallback | None = None,
    *,
    stop: asyncio.Event | None = None,
    stop_grace: float = DEFAULT_STOP_GRACE,
    lineage: bool = True,
    use_cache: bool = False,
) -> CrawlReport:
    """Fetch the details of every id into ``sink``; return the :class:`CrawlReport`.

    ``ids`` is read lazily (a collection is validated whole first; an iterator that turns
    out to hold a bad id stops the crawl, which raises InvalidParameterError with the
    partial report as ``err.report``). Each id is requested once. A batch that fails after
    its retries puts its ids in ``report.failed`` and the crawl goes on, and so does an id
    whose record in a paid answer could not be decoded (reason ``"undecodable record:
    ..."``; the answer is not retried, a resume asks for the id again); a 401 or 402 ends
    it: the records fetched are stored, the state written, and the error raised with the
    partial report attached as ``err.report``.

    With ``resume`` (and a built-in file sink) ids already stored or recorded missing are
    skipped; ``resume=False`` overwrites the output. Setting ``stop`` ends the crawl
    early: no new request starts, those in flight get ``stop_grace`` seconds, and the
    report comes back with ``aborted="interrupted"``. A cancelled crawl still closes the
    sink and writes its state. A crawl bypasses the client's cache unless ``use_cache``:
    then ids fresh in it cost nothing, and every answer is stored in it.

    With ``lineage`` (default) every record carries ``fetched_at`` and ``request_id``
    (see :doc:`the data model </data-model>`); ``lineage=False`` leaves both out.
    """
    if isinstance(ids, (str, bytes, int)):
        raise InvalidParameterError(
            f"expected an iterable of video ids, got a single {type(ids).__name__}"
        )
    if isinstance(ids, Collection):
        for position, value in enumerate(ids):
            video_id(value, position)  # a bad id anywhere refuses the crawl up front
    started = time.monotonic()
    report = CrawlReport()
    counters = _ClientCounters(client)
    params: dict[str, Any] = {"format": type(sink).__name__}
    if not lineage:
        params["lineage"] = False  # a resume must not mix records with and without it
    outputs = _Outputs(sink, "videos", params)
    outputs.open(resume)
    try:
        done = await outputs.done_ids() if resume else CompactIdSet()
        outputs.start()
    except BaseException:
        outputs.release()
        raise
    report.output = outputs.output
    await counters.resume_rate(outputs)
    feed: _SyncFeed | _AsyncFeed = (
        _AsyncFeed(ids, done, report) if isinstance(ids, AsyncIterable)
        else _SyncFeed(ids, done, report)
    )

    def stop_feed() -> None:
        feed.stopped = True

    stopper = _Stopper(stop, stop_grace, stop_feed)
    in_batches = 0
    handed_counted = False
    storing: DetailBatch | None = None  # the batch being handed to the sink
    fatal: KeyAPIError | None = None
    status = "running"
    try:
        # The client halts on `stop` too: batches not yet on the wire are given up at once.
        batches = client.iter_detail_batches(
            feed, dedupe=False, stop=stop, use_cache=use_cache
        )
        async with aclosing(batches):
            while True:
                try:
                    batch = await stopper.next(batches)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    break  # grace expired: in-flight batches were cancelled
                except KeyAPIError as exc:
                    fatal = exc  # 401/402, raised after the in-flight batches were yielded
                    break
                in_batches += len(batch.ids)
                storing = batch
                try:
                    await _store_batch(batch, report, outputs, lineage)
                except OutputWriteError as exc:
                    fatal = exc  # a full disk: stop now, in-flight requests are cancelled
                    break
                storing = None
                counters.update(report)
                report.elapsed = time.monotonic() - started
                if on_progress is not None:
                    on_progress(report)
        # Ids handed to the client but never seen back (cancelled in flight).
        report.not_attempted += feed.handed - in_batches
        handed_counted = True
        if fatal is not None or feed.error is not None or stopper.stopping:
            feed.stopped = True
            await feed.drain()
        if fatal is not None:
            report.aborted = _reason(fatal)
            status = "aborted"
        elif feed.error is not None:
            report.aborted = str(feed.error)
            status = "aborted"
        elif stopper.stopping:
            report.aborted = "interrupted"
            status = "interrupted"
        else:
            status = "complete" if report.ok else "failed"
    except BaseException as exc:
        if status == "running":
            # A custom sink's own error (aborted), or a cancellation such as a second Ctrl-C
            # (interrupted): either way the ids handed out and not seen back are accounted.
            status, report.aborted = _ended_by(exc, report.aborted)
            if not handed_counted:
                report.not_attempted += feed.handed - in_batches
            if storing is not None:  # its answer came, the sink did not take it
                for vid in storing.ids:
                    report.failed.setdefault(vid, f"not stored: {report.aborted}")
        exc.report = report  # type: ignore[attr-defined]
        raise
    finally:
        counters.update(report)
        counters.keep_rate(outputs)
        report.elapsed = time.monotonic() - started
        close_error = await outputs.close(report, status)
    error = fatal or feed.error or close_error
    if error is not None:
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def _stamp(records: Iterable[Any], request_id: str | None) -> None:
    """Set the lineage fields of one answer's records (a batch: 10 at most, a page: its
    size), with the time the crawl received it."""
    fetched_at = datetime.now(timezone.utc)
    for record in records:
        record.fetched_at = fetched_at
        record.request_id = request_id


def _lineage(records: list[Any], request_id: str | None, lineage: bool, cached: bool) -> list[Any]:
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


async def _store_batch(
    batch: DetailBatch, report: CrawlReport, outputs: _Outputs, lineage: bool = True
) -> None:
    """Store one batch and account for its ids; OutputWriteError (with the ids that could
    not be stored counted failed) when the output cannot be written."""
    if not batch.sent:
        report.not_attempted += len(batch.ids)
        return
    if batch.error is not None:
        reason = _reason(batch.error)
        for vid in batch.ids:
            report.failed[vid] = reason
        return
    if batch.attempts:  # 0: served by the cache
        report.credits_spent += 1
    videos = batch.videos  # one record per id asked: the client filters where it makes batches
    # Ids whose record could not be decoded: failed, with the reason (never retried here).
    report.failed.update(batch.failed)
    found = len(batch.ids) - len(batch.missing) - len(batch.failed)
    if videos:
        videos = _lineage(videos, batch.request_id, lineage, cached=batch.attempts == 0)
    try:
        if videos:
            await outputs.store(videos)
    except OutputWriteError as exc:
        _failed(report, batch.ids, exc)
        raise
    report.fetched += found
    if batch.missing:
        try:
            await outputs.store_missing(batch.missing)
        except OutputWriteError as exc:
            _failed(report, batch.missing, exc)  # a resume asks for them again
            raise
    report.missing += len(batch.missing)


def _with_placeholders(page: RankingPage, page_size: int, report: CrawlReport) -> list[Any]:
    """The page's records, with an empty record (``video_id`` ``""``, every other field
    None) holding the place of each item that could not be decoded: line n of the output
    stays rank n, and a resume counts pages right. The item is in ``report.failed`` as
    ``"rank N"`` (the page is paid: never refetched)."""
    if not page.failed:
        return page.items
    records: list[Any] = list(page.items)
    for position in sorted(page.failed):
        records.insert(position, RankedVideo(video_id=""))
        rank = (page.page_num - 1) * page_size + position + 1
        report.failed[f"rank {rank}"] = f"undecodable record: {page.failed[position]}"
    return records


def _ended_by(exc: BaseException, aborted: str | None) -> tuple[str, str]:
    """The state status and ``report.aborted`` for a crawl ended by an unexpected exception:
    an error (a custom sink's own, say) aborts it; a cancellation interrupts it. Only the
    exception's type is recorded: its text is not ours to put in a state file."""
    if isinstance(exc, Exception):
        return "aborted", aborted or f"aborted by {type(exc).__name__}"
    return "interrupted", aborted or "interrupted"


def _failed(report: CrawlReport, ids: Iterable[str], exc: KeyAPIError) -> None:
    reason = f"not stored: {_reason(exc)}"
    for vid in ids:
        report.failed[vid] = reason


async def crawl_video_ranking(
    client: KeyAPIClient,
    sink: Sink,
    *,
    date: date | str,
    region: str,
    video_rank_field: int,
    rank_type: int,
    max_pages: int | None = None,
    product_category_id: str | int | None = None,
    created_by_ai: bool | None = None,
    resume: bool = True,
    on_progress: ProgressCallback | None = None,
    page_size: int = MAX_PAGE_SIZE,
    stop: asyncio.Event | None = None,
    stop_grace: float = DEFAULT_STOP_GRACE,
    lineage: bool = True,
    use_cache: bool = False,
) -> CrawlReport:
    """Store a whole ranking list (or its first ``max_pages`` pages) in ``sink``.

    Pages are stored in rank order, one write each. With ``resume`` (and a built-in file
    sink) the crawl starts after the last page already stored: the records in the output
    say how many pages are done. A page that fails after its retries ends the crawl (a
    list cannot skip a page): the error is raised with the partial report as
    ``err.report``, and a re-run continues from there. An item of a paid page that could
    not be decoded is stored as an empty record (so that line n stays rank n) and listed
    in ``report.failed`` as ``"rank N"``; its page is not fetched again. The client's
    cache is bypassed unless ``use_cache``. ``lineage``: as for
    :func:`crawl_video_details` (a placeholder carries its page's lineage too).
    """
    query = ranking_query(
        date=date, region=region, video_rank_field=video_rank_field, rank_type=rank_type,
        product_category_id=product_category_id, created_by_ai=created_by_ai,
    )
    _, page_size = check_page(1, page_size)
    max_pages = check_max_pages(max_pages)
    started = time.monotonic()
    report = CrawlReport(kind="ranking")
    counters = _ClientCounters(client)
    params: dict[str, Any] = dict(query.params(1, page_size))
    del params["page_num"]
    params["format"] = type(sink).__name__
    if not lineage:
        params["lineage"] = False
    outputs = _Outputs(sink, "ranking", params)
    outputs.open(resume)
    try:
        stored = outputs.stored_count() if resume else 0
        outputs.state.pages_done = stored // page_size
        outputs.start()
    except BaseException:
        outputs.release()
        raise
    report.output = outputs.output
    await counters.resume_rate(outputs)
    # Pages are written whole and in order: the records stored say which pages are done.
    pages_done, partial = divmod(stored, page_size)
    report.skipped_resumed = report.requested = stored
    previous = outputs.previous
    complete = bool(partial) or (previous is not None and previous.status == "complete")
    remaining = None if max_pages is None else max_pages - pages_done

    stopper = _Stopper(stop, stop_grace, lambda: None)
    error: KeyAPIError | None = None
    status = "running"
    try:
        if not complete and (remaining is None or remaining > 0):
            pages = client.iter_ranking_pages(
                date=query.date, region=query.region, video_rank_field=query.video_rank_field,
                rank_type=query.rank_type, page_size=page_size, start_page=pages_done + 1,
                max_pages=remaining, product_category_id=query.product_category_id,
                created_by_ai=query.created_by_ai, stop=stop, use_cache=use_cache,
            )
            async with aclosing(pages):
                # Not `while not stopping`: after a stop, the pages already on the wire are
                # paid for; they come in (within the grace) and are stored, then the list ends.
                while True:
                    try:
                        page = await stopper.next(pages)
                    except (StopAsyncIteration, TimeoutError):
                        break
                    except KeyAPIError as exc:
                        error = exc
                        break
                    records = _with_placeholders(page, page_size, report)
                    records = _lineage(records, page.request_id, lineage, not page.attempts)
                    if page.attempts:  # 0: served by the cache
                        report.credits_spent += 1
                    if records:
                        try:
                            await outputs.store(records)
                        except OutputWriteError as exc:
                            error = exc  # the page is fetched again by a resume
                            break
                    report.pages += 1
                    report.fetched += len(page.items)
                    report.requested += len(records)
                    outputs.state.pages_done += 1
                    if len(records) < page_size:
                        complete = True
                    try:
                        outputs.save()
                    except OSError as exc:
                        assert outputs.file is not None  # only file sinks save a state
                        error = output_write_error(outputs.file.state_path, exc)
                        break
                    counters.update(report)
                    report.elapsed = time.monotonic() - started
                    if on_progress is not None:
                        on_progress(report)
        report.complete = complete
        if error is not None:
            report.aborted = _reason(error)
            status = "aborted"
        elif stopper.stopping:
            report.aborted = "interrupted"
            status = "interrupted"
        else:
            status = "complete" if complete else "partial"
    except BaseException as exc:
        if status == "running":
            status, report.aborted = _ended_by(exc, report.aborted)
            report.complete = complete
        exc.report = report  # type: ignore[attr-defined]
        raise
    finally:
        counters.update(report)
        counters.keep_rate(outputs)
        report.elapsed = time.monotonic() - started
        close_error = await outputs.close(report, status)
    error = error or close_error
    if error is not None:
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report
