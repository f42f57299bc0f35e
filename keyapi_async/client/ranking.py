"""Ranking lists: one page, and the pagination that fetches pages ahead with slow start.

The API gives no total: a list ends at the first page shorter than the page size. The
window of pages fetched ahead starts at one and grows by one with every full page (TCP's
slow start), so a short list costs few speculative requests and a long one soon runs at
the in-flight cap. Each page takes the attempt pipeline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Final

from ..app.caching import RANKING_PAGES, query_key
from ..pipeline.fanout import TaskWindow
from ..pipeline.models import RankedVideo
from ..pipeline.transport import closed_error
from ..pipeline.validation import (
    MAX_PAGE_NUM,
    RankingQuery,
    check_max_pages,
    check_page,
    ranking_query,
)
from .attempts import (
    Aborted,
    AttemptPipeline,
    CallScope,
    Decode,
    Request,
    check_grace,
    warn_skipped,
)

__all__ = ["RANKING_PATH", "RankingCalls", "RankingPage"]

RANKING_PATH: Final = "/v1/tiktok/video/ranking/analytics"


@dataclass(frozen=True)
class RankingPage:
    """One page of a ranking list, with its page number.

    ``failed`` maps the position (0-based, in the answer) of each item that could not be
    decoded to the reason; ``items`` holds the others, in order. The page held
    ``len(items) + len(failed)`` items.
    """

    page_num: int
    items: list[RankedVideo]
    request_id: str | None = None
    attempts: int = 1
    failed: dict[int, str] = field(default_factory=dict)



class RankingCalls(AttemptPipeline):
    """The client's ranking calls (see :class:`KeyAPIClient`)."""

    _decode_ranking: Decode[RankedVideo]

    async def _ranking_page(
        self, query: RankingQuery, page_num: int, page_size: int, request: Request,
        use_cache: bool = False,
    ) -> RankingPage:
        params = query.params(page_num, page_size)
        cache = self._cache if use_cache else None
        if cache is not None:
            key = query_key(RANKING_PATH, params)
            items = (await self._cache_get(cache, RANKING_PAGES, "ranking", [key])).get(key)
            if items is not None:
                self.stats.credits_saved += 1
                return RankingPage(page_num, items, attempts=0)
        decoded = await self._request(RANKING_PATH, params, self._decode_ranking, request)
        failed = {f.position: f.reason for f in decoded.failed}
        if cache is not None and not failed:  # a page with holes is not served again
            await cache.set_many(RANKING_PAGES, {key: decoded.records})
        return RankingPage(
            page_num, decoded.records, decoded.request_id, request.attempts, failed=failed
        )

    async def video_ranking(
        self,
        *,
        date: dt.date | str,
        region: str,
        video_rank_field: int,
        rank_type: int,
        page_num: int = 1,
        page_size: int = 10,
        product_category_id: str | int | None = None,
        created_by_ai: bool | None = None,
    ) -> list[RankedVideo]:
        """Fetch one page of a ranking list.

        ``date`` is a ``datetime.date`` or ``'YYYY-MM-DD'`` (a Monday for weekly lists, the
        1st for monthly ones); ``video_rank_field`` a :class:`VideoRankField`, ``rank_type``
        a :class:`RankType` (plain ints work). Everything is validated before sending.
        A fresh page in the client's cache (keyed by the whole query) costs no request.
        """
        query = ranking_query(
            date=date, region=region, video_rank_field=video_rank_field, rank_type=rank_type,
            product_category_id=product_category_id, created_by_ai=created_by_ai,
        )
        page_num, page_size = check_page(page_num, page_size)
        if self._closed:
            raise closed_error()
        self._bind_loop()
        page = await self._ranking_page(
            query, page_num, page_size, Request(CallScope()), use_cache=True
        )
        if page.failed:
            warn_skipped("items", list(page.failed), page.failed, page.request_id)
        return page.items

    async def iter_ranking_pages(
        self,
        *,
        date: dt.date | str,
        region: str,
        video_rank_field: int,
        rank_type: int,
        page_size: int = 10,
        start_page: int = 1,
        max_pages: int | None = None,
        product_category_id: str | int | None = None,
        created_by_ai: bool | None = None,
        stop: asyncio.Event | None = None,
        stop_grace: float | None = None,
        use_cache: bool = False,
    ) -> AsyncGenerator[RankingPage, None]:
        """Yield the pages of a ranking list in order, fetched concurrently.

        The API gives no total: the list ends at the first page shorter than ``page_size``.
        The window of pages fetched ahead starts at one and grows by one with every full
        page, so it doubles every round trip, as TCP's slow start does (up to the in-flight
        cap): a short list costs few speculative requests, a long one soon runs at full
        speed. No page is fetched twice; ``max_pages`` is exact.
        Setting ``stop`` ends the list early: pages on the wire finish and are yielded in
        order, up to the first page that was given up; with ``stop_grace`` seconds, pages
        still on the wire that long after the stop are given up too (the server may have
        answered and charged them: counted in ``stats.cancelled_on_wire``). The cache is
        bypassed unless ``use_cache``: then fresh pages come from it (``attempts == 0``, no
        credit) and the others are stored in it.
        """
        query = ranking_query(
            date=date, region=region, video_rank_field=video_rank_field, rank_type=rank_type,
            product_category_id=product_category_id, created_by_ai=created_by_ai,
        )
        start_page, page_size = check_page(start_page, page_size)
        max_pages = check_max_pages(max_pages)
        grace = check_grace(stop_grace)
        self._bind_loop()
        last = MAX_PAGE_NUM if max_pages is None else min(MAX_PAGE_NUM, start_page + max_pages - 1)

        scope = CallScope(stop, grace)
        # Pages, plus the tasks that wake the loop on a stop (see CallScope.watch).
        window: TaskWindow[Any] = TaskWindow()
        requests: dict[asyncio.Task[Any], tuple[int, Request]] = {}
        ready: dict[int, RankingPage] = {}
        next_page = expected = start_page
        ahead = 1  # slow start: pages allowed in flight, one more per full page
        async with window:
            scope.watch(window)
            try:
                while expected <= last:
                    if scope.halted:
                        # Stop: pages on the wire finish (within the grace), the rest are
                        # given up; nothing new.
                        scope.halt({task: entry[1] for task, entry in requests.items()}, window)
                        last = min(last, next_page - 1)
                    while next_page <= last and len(requests) < min(ahead, self._inflight.limit):
                        request = Request(scope)
                        task = window.spawn(
                            self._ranking_page(query, next_page, page_size, request, use_cache)
                        )
                        requests[task] = (next_page, request)
                        next_page += 1
                    if expected in ready:
                        page = ready.pop(expected)
                        expected += 1
                        yield page
                        continue
                    if not requests:
                        break
                    task = await window.next_done()
                    entry = requests.pop(task, None)
                    if entry is None:  # a stop, or the end of its grace, woke the loop
                        continue
                    page_num = entry[0]
                    try:
                        page = task.result()  # a page's error is raised: the list cannot skip it
                    except (asyncio.CancelledError, Aborted):
                        last = min(last, page_num - 1)  # given up: the list stops before it
                        continue
                    if len(page.items) + len(page.failed) < page_size:
                        # The end: pages after this one are empty. Cancel those not yet answered.
                        last = min(last, page_num)
                        for other, (num, _) in requests.items():
                            if num > last:
                                other.cancel()
                    else:
                        ahead += 1
                    if page_num <= last:
                        ready[page_num] = page
            finally:
                scope.close()

    async def iter_video_ranking(
        self,
        *,
        date: dt.date | str,
        region: str,
        video_rank_field: int,
        rank_type: int,
        page_size: int = 10,
        start_page: int = 1,
        max_pages: int | None = None,
        product_category_id: str | int | None = None,
        created_by_ai: bool | None = None,
    ) -> AsyncGenerator[RankedVideo, None]:
        """Yield a ranking list's items in rank order, across pages (see iter_ranking_pages)."""
        pages = self.iter_ranking_pages(
            date=date, region=region, video_rank_field=video_rank_field, rank_type=rank_type,
            page_size=page_size, start_page=start_page, max_pages=max_pages,
            product_category_id=product_category_id, created_by_ai=created_by_ai,
        )
        async with aclosing(pages):
            async for page in pages:
                if page.failed:
                    warn_skipped("items", list(page.failed), page.failed, page.request_id)
                for item in page.items:
                    yield item

