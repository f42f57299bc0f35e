"""Video details: the detail fan-out, and the lookups that go through the cache and the
coalescer first.

Ids are validated and packed 10 a request (``batching``), then fanned out through a
bounded window of requests (``fanout``), at most the in-flight cap at a time, each taking
the attempt pipeline. Lookups of single videos (``video_detail``, ``video_details``) first
ask the cache, if the client has one, then the coalescer, which merges concurrent calls into
shared batches fed to the same pipeline; iterators and crawls take the fan-out directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Final

from ..app.caching import DETAILS, Cache
from ..app.coalescing import Coalescer, Fetched
from ..pipeline.batching import MAX_IDS_PER_REQUEST, IdSource, id_batches, list_batches, unique_ids
from ..pipeline.errors import KeyAPIError
from ..pipeline.fanout import TaskWindow
from ..pipeline.models import VideoDetail
from ..pipeline.salvage import failed_ids
from ..pipeline.transport import closed_error
from ..pipeline.validation import video_id as _video_id
from .attempts import (
    Aborted,
    AttemptPipeline,
    CallScope,
    Decode,
    Request,
    check_grace,
    warn_skipped,
)

__all__ = ["DETAIL_PATH", "DetailBatch", "DetailCalls"]

logger = logging.getLogger("keyapi_async")

DETAIL_PATH: Final = "/v1/tiktok/video/detail/analytics"


@dataclass(frozen=True)
class DetailBatch:
    """The outcome of one detail request (up to 10 ids): the unit of accounting.

    Exactly one of these holds: ``error`` is None and every id is in ``videos``,
    ``missing`` or ``failed``; ``error`` is set (the batch failed after its retries, or hit
    a fatal error); or ``sent`` is False (the call was aborted before this batch went out).
    ``failed`` maps the ids whose record in this (paid, complete) answer could not be
    decoded at all to the reason; such an answer is never retried.
    """

    ids: tuple[str, ...]
    videos: list[VideoDetail] = field(default_factory=list)
    missing: tuple[str, ...] = ()
    error: KeyAPIError | None = None
    sent: bool = True
    attempts: int = 0
    rate_limited: int = 0
    request_id: str | None = None
    failed: dict[str, str] = field(default_factory=dict)


#: What the fan-out takes: ids to request, or a batch answered already (from the cache).
_Batch = list[str] | DetailBatch


class DetailCalls(AttemptPipeline):
    """The client's video-detail calls (see :class:`KeyAPIClient`)."""

    _decode_detail: Decode[VideoDetail]
    _coalescer: Coalescer[VideoDetail] | None
    _coalesced: dict[asyncio.Task[Any], Request]
    _app_scope: CallScope

    async def _detail_batch(
        self, ids: list[str], request: Request, store: bool = False
    ) -> DetailBatch:
        """One detail request, as a DetailBatch; ``store``: keep the answer in the cache."""
        try:
            decoded = await self._request(
                DETAIL_PATH, {"video_ids": ",".join(ids)}, self._decode_detail, request
            )
        except Aborted:
            return DetailBatch(tuple(ids), sent=False, attempts=request.attempts)
        except KeyAPIError as exc:
            if exc.fatal and not request.attempts:
                # Refused before it was ever sent (credit budget, closed client): these
                # ids were not attempted; the call raises the error.
                return DetailBatch(tuple(ids), sent=False)
            return DetailBatch(
                tuple(ids), error=exc, attempts=request.attempts,
                rate_limited=request.rate_limited, request_id=exc.request_id,
            )
        videos, request_id = decoded.records, decoded.request_id
        found = {v.video_id for v in videos}
        failed = failed_ids(ids, found, decoded.failed) if decoded.failed else {}
        missing = tuple(i for i in ids if i not in found and i not in failed)
        if not len(videos) == len(found) == len(ids) - len(missing) - len(failed):
            # A repeated record, one not asked for, or one without an id: every path that
            # yields records starts here, so each yields only ids asked, once each.
            asked = set(ids)
            first: dict[str, VideoDetail] = {}
            for video in videos:  # the slow path only: a clean answer skips it
                if video.video_id in asked:
                    first.setdefault(video.video_id, video)
            videos = list(first.values())
        if missing:
            logger.debug("ids unknown to the API (request id %s): %s", request_id, missing)
        if store and self._cache is not None:
            # Records, and ids the API did not know (negative entries); never the ids
            # whose record could not be decoded: asking again may succeed.
            entries: dict[str, VideoDetail | None] = dict.fromkeys(missing)
            entries.update((v.video_id, v) for v in videos if v.video_id is not None)
            await self._cache.set_many(DETAILS, entries)
        return DetailBatch(
            tuple(ids), videos, missing, attempts=request.attempts,
            rate_limited=request.rate_limited, request_id=request_id, failed=failed,
        )

    def iter_detail_batches(
        self, ids: IdSource, *, dedupe: bool = True, stop: asyncio.Event | None = None,
        stop_grace: float | None = None, use_cache: bool = False,
    ) -> AsyncGenerator[DetailBatch, None]:
        """Yield one :class:`DetailBatch` per request, as requests complete.

        The accounting view of :meth:`iter_video_details`: a batch that fails after its
        retries is yielded with its ``error`` and the call goes on. A 401 or 402 halts the
        call: no new request starts, batches on the wire finish and are yielded, the others
        are yielded with ``sent=False``, then the error is raised. Setting ``stop`` halts
        the call the same way and ends the iteration normally (no more ids are pulled);
        with ``stop_grace`` seconds, the requests still on the wire that long after the
        stop are cancelled and yielded with ``sent=False`` too (the server may have
        answered and charged them: counted in ``stats.cancelled_on_wire``).

        Ids from an async iterable are pulled while requests run: a batch that completes
        is yielded at once, even while the source is still producing the next ids.

        The cache is bypassed unless ``use_cache`` (and the client has one): then ids it
        holds come back first in batches with ``attempts == 0`` (no request, no credit),
        the others are packed 10 a request, and every answer is stored in it.
        """
        grace = check_grace(stop_grace)
        batches = id_batches(ids, dedupe=dedupe)
        if use_cache and self._cache is not None:
            source = self._from_cache(batches, self._cache)
            return self._fan_out(source, stop, store=True, grace=grace, pull_ahead=True)
        return self._fan_out(
            batches, stop, grace=grace, pull_ahead=isinstance(ids, AsyncIterable)
        )

    async def _from_cache(
        self, batches: AsyncGenerator[list[str], None], cache: Cache
    ) -> AsyncGenerator[list[str] | DetailBatch, None]:
        """Serve the ids ``cache`` holds as ready batches; repack the others 10 a request."""
        pending: list[str] = []
        seen = asked = 0
        try:
            async with aclosing(batches):
                async for batch in batches:
                    seen += len(batch)
                    hits = await self._cache_get(cache, DETAILS, "detail", batch)
                    if hits:
                        known = [v for v in hits.values() if v is not None]
                        unknown = tuple(i for i, v in hits.items() if v is None)
                        yield DetailBatch(tuple(hits), known, unknown, attempts=0)
                        pending.extend(i for i in batch if i not in hits)
                    else:
                        pending.extend(batch)
                    while len(pending) >= MAX_IDS_PER_REQUEST:
                        asked += MAX_IDS_PER_REQUEST
                        yield pending[:MAX_IDS_PER_REQUEST]
                        del pending[:MAX_IDS_PER_REQUEST]
                if pending:
                    asked += len(pending)
                    yield pending
        finally:
            self.stats.credits_saved += _requests(seen) - _requests(asked)

    async def _fan_out(
        self, batches: AsyncGenerator[_Batch, None], stop: asyncio.Event | None,
        store: bool = False, *, grace: float | None = None, pull_ahead: bool = False,
    ) -> AsyncGenerator[DetailBatch, None]:
        """Run one request per batch of valid ids, at most the in-flight cap at a time
        (a batch already answered, from the cache, passes through).

        ``pull_ahead``, for a source that may wait (an async iterable, a cache): the next
        batch is pulled by a task of the window, so batches that complete meanwhile are
        yielded without waiting for the source. A source that never waits (ids in a list)
        is read inline: a task per batch would cost more than it could save."""
        self._bind_loop()
        scope = CallScope(stop, grace)
        # Requests, plus the pull of the next batch and the tasks that wake the loop on a
        # stop (see CallScope.watch): every wait of the loop is one next_done().
        window: TaskWindow[Any] = TaskWindow()
        requests: dict[asyncio.Task[Any], tuple[list[str], Request]] = {}
        pull: asyncio.Task[_Batch | None] | None = None
        async with aclosing(batches), window:
            scope.watch(window)
            try:
                exhausted = False
                while True:
                    if scope.halted:
                        scope.halt({task: entry[1] for task, entry in requests.items()}, window)
                        if scope.expired and pull is not None:
                            pull.cancel()  # the source waited past the grace: it ends
                    while (
                        not exhausted and pull is None and not scope.halted
                        and len(requests) < self._inflight.limit
                    ):
                        if pull_ahead:
                            pull = window.spawn(_pull(batches))
                            break
                        try:
                            batch = await anext(batches)
                        except StopAsyncIteration:
                            exhausted = True
                            break
                        self._spawn_batch(batch, window, requests, scope, store)
                    if not requests and pull is None:
                        break
                    task = await window.next_done()
                    if task is pull:
                        pull = None
                        pulled = None if task.cancelled() else task.result()
                        if pulled is None:
                            exhausted = True
                        else:
                            self._spawn_batch(pulled, window, requests, scope, store)
                        continue
                    entry = requests.pop(task, None)
                    if entry is None:  # a stop, or the end of its grace, woke the loop
                        continue
                    ids, request = entry
                    if task.cancelled():  # halted while waiting (or on the wire, past grace)
                        yield DetailBatch(tuple(ids), sent=False, attempts=request.attempts)
                    else:
                        yield task.result()
            finally:
                scope.close()
        if scope.fatal is not None:
            raise scope.fatal

    def _spawn_batch(
        self, batch: _Batch, window: TaskWindow[Any],
        requests: dict[asyncio.Task[Any], tuple[list[str], Request]], scope: CallScope,
        store: bool,
    ) -> None:
        """Start the request of one batch in the fan-out's window."""
        request = Request(scope)
        if isinstance(batch, DetailBatch):
            request.on_wire = True  # answered already: never given up
            requests[window.spawn(_ready(batch))] = (list(batch.ids), request)
        else:
            requests[window.spawn(self._detail_batch(batch, request, store))] = (batch, request)

    async def _videos(
        self, batches: AsyncGenerator[list[str], None], store: bool = False
    ) -> AsyncGenerator[VideoDetail, None]:
        """The records of each batch as it completes; the first batch error is raised."""
        async with aclosing(self._fan_out(batches, None, store)) as results:
            async for result in results:
                if result.error is not None:
                    raise result.error
                if result.failed:
                    warn_skipped("ids", list(result.failed), result.failed, result.request_id)
                for video in result.videos:
                    yield video

    def iter_video_details(self, ids: IdSource) -> AsyncGenerator[VideoDetail, None]:
        """Yield VideoDetails as their batches complete (ids pulled lazily, deduplicated).

        Ids the API does not know are skipped (logged at DEBUG), and so are ids whose record
        in a paid answer could not be decoded at all (logged at WARNING). Raises the first
        error a batch could not recover from; use :meth:`iter_detail_batches` to carry on
        past them and to see every id's outcome. Neither the coalescer nor the cache is
        used: an iterator is a crawl.
        """
        return self._videos(id_batches(ids))

    async def video_details(self, ids: Iterable[str | int]) -> list[VideoDetail]:
        """Fetch details for any number of ids: one VideoDetail per known id, in input order.

        Every id is validated before the first request; duplicates are sent once; ids are
        packed 10 a request. Fresh entries of the client's cache are served without a
        request (ids the API did not know included). With coalescing (the default),
        concurrent calls share requests: each gets exactly its own records, in its own
        order, and only the errors of its own ids. Ids whose record could not be decoded
        are skipped (logged at WARNING).
        """
        unique = unique_ids(ids)  # validated once, here: the batches below are made from it
        found = await self._lookup(unique)
        return [video for vid in unique if (video := found.get(vid)) is not None]

    async def video_detail(self, video_id: str | int) -> VideoDetail | None:
        """Fetch one video's details; None if the API does not know it (or its record could
        not be decoded, logged at WARNING). Cached and coalesced as :meth:`video_details`:
        concurrent calls share requests of up to 10 ids."""
        vid = _video_id(video_id)
        return (await self._lookup([vid])).get(vid)

    async def _lookup(self, unique: list[str]) -> dict[str, VideoDetail]:
        """The records of valid, unique ids: the cache first, then requests (shared through
        the coalescer, or the call's own)."""
        if self._closed:
            raise closed_error()
        self._bind_loop()
        todo = unique
        found: dict[str, VideoDetail] = {}
        if self._cache is not None and unique:
            hits = await self._cache_get(self._cache, DETAILS, "detail", unique)
            if hits:
                found = {vid: video for vid, video in hits.items() if video is not None}
                todo = [vid for vid in unique if vid not in hits]
        coalescer = self._coalescer
        if coalescer is None:
            self.stats.credits_saved += _requests(len(unique)) - _requests(len(todo))
            if todo:
                async with aclosing(self._videos(list_batches(todo), store=True)) as videos:
                    async for video in videos:
                        if video.video_id is not None:  # always: batches keep asked ids only
                            found.setdefault(video.video_id, video)
            return found
        # Each request sent for a lookup takes one back (see _coalesced_fetch).
        self.stats.credits_saved += _requests(len(unique))
        if todo:
            try:
                records = await coalescer.get(todo)
            finally:
                self.stats.coalesced = coalescer.joined
            for vid, record in zip(todo, records, strict=True):
                if record is not None:
                    found[vid] = record
        return found

    async def _coalesced_fetch(self, ids: list[str]) -> Fetched[VideoDetail]:
        """The coalescer's fetch: one shared request through the pipeline, its answer kept
        in the cache. A fatal error is raised (the coalescer fails every waiting lookup)
        and ends the shared scope, so that later lookups start afresh."""
        self.stats.credits_saved -= 1
        scope = self._app_scope
        request = Request(scope)
        request.waiting = True  # until its first attempt reaches the wire
        coalescer = self._coalescer
        if coalescer is not None:
            request.on_send = coalescer.wake  # the next batch may queue for a permit
        task = asyncio.current_task()
        assert task is not None
        self._coalesced[task] = request
        try:
            batch = await self._detail_batch(ids, request, store=True)
        finally:
            del self._coalesced[task]
        if batch.sent and batch.error is None:
            if batch.failed:
                warn_skipped("ids", list(batch.failed), batch.failed, batch.request_id)
            return Fetched({v.video_id: v for v in batch.videos if v.video_id is not None})
        error = batch.error or scope.fatal or closed_error()
        if error.fatal and self._app_scope is scope:
            self._app_scope = CallScope()
        raise error


def _requests(ids: int) -> int:
    """Detail requests ``ids`` distinct ids take on their own."""
    return -(-ids // MAX_IDS_PER_REQUEST)


async def _ready(batch: DetailBatch) -> DetailBatch:
    """A batch answered already (from the cache), as a task of the fan-out's window."""
    return batch


async def _pull(batches: AsyncGenerator[_Batch, None]) -> _Batch | None:
    """The source's next batch (None at its end), as a task of the fan-out's window."""
    return await anext(batches, None)
