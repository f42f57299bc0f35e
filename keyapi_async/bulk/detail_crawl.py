"""The detail crawl: ids in, every id's outcome out, each credit paid once.

:func:`crawl_video_details` streams ids through :meth:`KeyAPIClient.iter_detail_batches`,
writes each answer to a sink as it arrives and accounts for every id in a
:class:`~keyapi_async.CrawlReport` (see :mod:`keyapi_async.bulk.report`). A resumed crawl
skips the ids already stored or recorded missing. A stop is the client's: no new request
starts, those on the wire get the grace, then they are given up and counted not attempted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Collection, Iterable
from contextlib import aclosing

from ..client.client import KeyAPIClient
from ..client.details import DetailBatch
from ..pipeline.errors import InvalidParameterError, KeyAPIError, OutputWriteError
from ..pipeline.validation import video_id
from .idset import CompactIdSet
from .report import CrawlReport, ProgressCallback, reason
from .run import DEFAULT_STOP_GRACE, CrawlRun, Outputs, with_lineage
from .sinks.base import Sink

__all__ = ["crawl_video_details"]


class _Feed:
    """The crawl's view of the input: validates, drops repeats and ids already done.

    Handed to the client as its id source (with ``dedupe=False``); it can be stopped, and
    after an abort it is drained to count the ids never sent.
    """

    def __init__(
        self, done: CompactIdSet, report: CrawlReport, stop: asyncio.Event | None
    ) -> None:
        self.done = done
        # Compact (~8.5 bytes an id): the only structure of a crawl that grows with the input.
        self.seen = CompactIdSet()
        self.report = report
        self.position = 0
        self.handed = 0
        self.stopped = False
        self.stop = stop
        self.error: InvalidParameterError | None = None

    @property
    def halted(self) -> bool:
        """No more ids are handed out: a bad id, or the crawl's stop."""
        return self.stopped or (self.stop is not None and self.stop.is_set())

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
    def __init__(
        self, ids: Iterable[object], done: CompactIdSet, report: CrawlReport,
        stop: asyncio.Event | None,
    ):
        super().__init__(done, report, stop)
        self._it = iter(ids)

    def __iter__(self) -> _SyncFeed:
        return self

    def __next__(self) -> str:
        while not self.halted:
            value = next(self._it)
            vid = self.accept(value)
            if vid is not None:
                self.handed += 1
                return vid
        raise StopIteration

    async def drain(self) -> None:
        self.count_rest(self._it)


class _AsyncFeed(_Feed):
    def __init__(
        self, ids: AsyncIterable[object], done: CompactIdSet, report: CrawlReport,
        stop: asyncio.Event | None,
    ):
        super().__init__(done, report, stop)
        self._it = aiter(ids)

    def __aiter__(self) -> _AsyncFeed:
        return self

    async def __anext__(self) -> str:
        while not self.halted:
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
    report = CrawlReport()
    run = CrawlRun(client, sink, report, {}, lineage)

    async def done_ids(outputs: Outputs) -> CompactIdSet:
        return await outputs.done_ids() if resume else CompactIdSet()

    done = await run.open(resume, done_ids)
    feed: _SyncFeed | _AsyncFeed = (
        _AsyncFeed(ids, done, report, stop) if isinstance(ids, AsyncIterable)
        else _SyncFeed(ids, done, report, stop)
    )
    in_batches = 0
    handed_counted = False
    storing: DetailBatch | None = None  # the batch being handed to the sink
    fatal: KeyAPIError | None = None

    def on_abort() -> None:
        # A custom sink's own error, or a cancellation such as a second Ctrl-C: the ids
        # handed out and not seen back are accounted, and so is a batch not stored.
        if not handed_counted:
            report.not_attempted += feed.handed - in_batches
        if storing is not None:  # its answer came, the sink did not take it
            for vid in storing.ids:
                report.failed.setdefault(vid, f"not stored: {report.aborted}")

    run.on_abort = on_abort
    async with run:
        # The client halts on `stop`: batches not yet on the wire are given up at once, those
        # on the wire get the grace, then they are given up too (sent=False: not attempted).
        batches = client.iter_detail_batches(
            feed, dedupe=False, stop=stop, stop_grace=stop_grace, use_cache=use_cache
        )
        async with aclosing(batches):
            while True:
                try:
                    batch = await anext(batches)
                except StopAsyncIteration:
                    break
                except KeyAPIError as exc:
                    fatal = exc  # 401/402, raised after the in-flight batches were yielded
                    break
                in_batches += len(batch.ids)
                storing = batch
                try:
                    await _store_batch(batch, report, run.outputs, lineage)
                except OutputWriteError as exc:
                    fatal = exc  # a full disk: stop now, in-flight requests are cancelled
                    break
                storing = None
                run.progress(on_progress)
        stopped = stop is not None and stop.is_set()
        # Ids handed to the client but never seen back (in a batch not yet made).
        report.not_attempted += feed.handed - in_batches
        handed_counted = True
        if fatal is not None or feed.error is not None or stopped:
            feed.stopped = True
            await feed.drain()
        aborted = (
            reason(fatal) if fatal is not None
            else str(feed.error) if feed.error is not None else None
        )
        run.end(aborted, stopped, "complete" if report.ok else "failed")
    return run.result(fatal or feed.error)


async def _store_batch(
    batch: DetailBatch, report: CrawlReport, outputs: Outputs, lineage: bool = True
) -> None:
    """Store one batch and account for its ids; OutputWriteError (with the ids that could
    not be stored counted failed) when the output cannot be written."""
    if not batch.sent:
        report.not_attempted += len(batch.ids)
        return
    if batch.error is not None:
        why = reason(batch.error)
        for vid in batch.ids:
            report.failed[vid] = why
        return
    if batch.attempts:  # 0: served by the cache
        report.credits_spent += 1
    videos = batch.videos  # one record per id asked: the client filters where it makes batches
    # Ids whose record could not be decoded: failed, with the reason (never retried here).
    report.failed.update(batch.failed)
    found = len(batch.ids) - len(batch.missing) - len(batch.failed)
    if videos:
        videos = with_lineage(videos, batch.request_id, lineage, cached=batch.attempts == 0)
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


def _failed(report: CrawlReport, ids: Iterable[str], exc: KeyAPIError) -> None:
    why = f"not stored: {reason(exc)}"
    for vid in ids:
        report.failed[vid] = why
