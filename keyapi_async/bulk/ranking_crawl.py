"""The ranking crawl: a whole ranking list (or its first pages) in rank order, resumable.

:func:`crawl_video_ranking` walks :meth:`KeyAPIClient.iter_ranking_pages` and stores each
page whole and in order, so the records stored say which pages are done: a resumed crawl
starts after the last one.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from datetime import date
from typing import Any

from ..client.client import KeyAPIClient
from ..client.ranking import RankingPage
from ..pipeline.errors import KeyAPIError, OutputWriteError
from ..pipeline.models import RankedVideo
from ..pipeline.validation import MAX_PAGE_SIZE, check_max_pages, check_page, ranking_query
from .report import CrawlReport, ProgressCallback, reason
from .run import DEFAULT_STOP_GRACE, CrawlRun, Outputs, with_lineage
from .sinks.base import Sink, output_write_error

__all__ = ["crawl_video_ranking"]


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
    report = CrawlReport(kind="ranking")
    params: dict[str, Any] = dict(query.params(1, page_size))
    del params["page_num"]
    run = CrawlRun(client, sink, report, params, lineage)

    async def stored_count(outputs: Outputs) -> int:
        stored = outputs.stored_count() if resume else 0
        outputs.state.pages_done = stored // page_size
        return stored

    stored = await run.open(resume, stored_count)
    outputs = run.outputs
    # Pages are written whole and in order: the records stored say which pages are done.
    pages_done, partial = divmod(stored, page_size)
    report.skipped_resumed = report.requested = stored
    previous = outputs.previous
    complete = bool(partial) or (previous is not None and previous.status == "complete")
    remaining = None if max_pages is None else max_pages - pages_done

    error: KeyAPIError | None = None
    run.on_abort = lambda: setattr(report, "complete", complete)
    async with run:
        if not complete and (remaining is None or remaining > 0):
            pages = client.iter_ranking_pages(
                date=query.date, region=query.region, video_rank_field=query.video_rank_field,
                rank_type=query.rank_type, page_size=page_size, start_page=pages_done + 1,
                max_pages=remaining, product_category_id=query.product_category_id,
                created_by_ai=query.created_by_ai, stop=stop, stop_grace=stop_grace,
                use_cache=use_cache,
            )
            async with aclosing(pages):
                # Not `while not stopping`: after a stop, the pages already on the wire are
                # paid for; they come in (within the grace) and are stored, then the list ends.
                while True:
                    try:
                        page = await anext(pages)
                    except StopAsyncIteration:
                        break
                    except KeyAPIError as exc:
                        error = exc
                        break
                    records = _with_placeholders(page, page_size, report)
                    records = with_lineage(records, page.request_id, lineage, not page.attempts)
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
                    run.progress(on_progress)
        report.complete = complete
        run.end(
            None if error is None else reason(error), stop is not None and stop.is_set(),
            "complete" if complete else "partial",
        )
    return run.result(error)


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
