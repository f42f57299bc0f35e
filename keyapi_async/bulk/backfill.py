"""Ranking backfills: every list of a date range, one partition each, complete ones skipped.

:func:`crawl_ranking_range` crawls the lists of :func:`ranking_dates` one after the other
with :func:`~keyapi_async.crawl_video_ranking`, each into its own output (``{date}`` in the
path is the list's date). Guarantees: every date is checked against the rank type (daily:
any day; weekly: Mondays; monthly: the 1st; never in the future) and every output path
before the first request; a list already complete in its output costs no request (its
state file says so); a list that fails is reported and the next one crawled, while a
fatal error (401, 402, a full disk, ...) stops the backfill and is raised with the
partial :class:`RangeReport` as ``err.report``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from ..client.client import KeyAPIClient
from ..pipeline.errors import InvalidParameterError, KeyAPIError
from ..pipeline.models import RankedVideo, RankType
from ..pipeline.validation import _date, _enum, ranking_query
from .outputs import is_database, open_output
from .ranking_crawl import crawl_video_ranking
from .report import CrawlReport
from .run import DEFAULT_STOP_GRACE
from .sinks.base import DATE_FIELD, Sink

__all__ = ["RangeReport", "crawl_ranking_range", "ranking_dates"]

#: The most lists one backfill may hold (about 27 years of daily lists): a typo guard.
MAX_LISTS = 10_000


def ranking_dates(
    rank_type: RankType | int,
    *,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    dates: Iterable[dt.date | str] | None = None,
) -> list[dt.date]:
    """The list dates of a backfill, sorted and unique: ``dates`` as given (each must fit
    ``rank_type``), or every list from ``start`` to ``end`` inclusive (daily: each day;
    weekly: each Monday; monthly: each 1st). InvalidParameterError otherwise."""
    period = RankType(_enum(rank_type, RankType, "rank_type"))
    today = dt.datetime.now(dt.timezone.utc).date()
    if dates is not None:
        if start is not None or end is not None:
            raise InvalidParameterError("give either dates or start and end, not both")
        if isinstance(dates, (str, dt.date)):
            dates = [dates]
        days = sorted({_date(d, period, today) for d in dates})
        if not days:
            raise InvalidParameterError("dates is empty: no list to crawl")
        return days
    if start is None or end is None:
        raise InvalidParameterError("give dates, or both start and end")
    first = _date(start, RankType.DAY, today)
    last = _date(end, RankType.DAY, today)
    if first > last:
        raise InvalidParameterError(f"the range is empty: start {first} is after end {last}")
    if (last - first).days >= MAX_LISTS:
        raise InvalidParameterError(f"the range holds more than {MAX_LISTS:,} days")
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    if period == RankType.WEEK:
        days = [d for d in days if d.weekday() == 0]
    elif period == RankType.MONTH:
        days = [d for d in days if d.day == 1]
    if not days:
        keyed = "a Monday" if period == RankType.WEEK else "the 1st of a month"
        raise InvalidParameterError(
            f"no {period.name.lower()}ly list from {first} to {last}: "
            f"those lists are keyed by {keyed}"
        )
    return days


@dataclass
class RangeReport:
    """What a backfill did: one :class:`CrawlReport` per list, and their sum."""

    #: each list's report, by date, in date order (lists not reached are absent)
    lists: dict[dt.date, CrawlReport] = field(default_factory=dict)
    #: lists done already: complete, or ``max_pages`` stored (no request made for them)
    skipped: list[dt.date] = field(default_factory=list)
    #: lists not crawled because the backfill stopped early
    not_attempted: list[dt.date] = field(default_factory=list)

    @property
    def total(self) -> CrawlReport:
        """The lists' reports added up (``failed`` keys prefixed by the list's date;
        ``complete`` when every list is; ``aborted`` the first list's reason)."""
        total = CrawlReport(complete=bool(self.lists) and not self.not_attempted)
        counted = [
            f.name for f in fields(CrawlReport) if f.type in ("int", "float")
        ]
        for day, report in self.lists.items():
            for name in counted:
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.failed.update({f"{day} {k}": v for k, v in report.failed.items()})
            total.complete = total.complete and report.complete
            if total.aborted is None and report.aborted is not None:
                total.aborted = f"{day}: {report.aborted}"
        if total.aborted is None and self.not_attempted:
            total.aborted = "interrupted"
        return total

    @property
    def ok(self) -> bool:
        """Every list complete, nothing failed."""
        total = self.total
        return total.complete and not total.failed and total.aborted is None

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``lists`` keyed by ISO date, plus ``total``."""
        return {
            "lists": {d.isoformat(): r.to_dict() for d, r in self.lists.items()},
            "skipped": [d.isoformat() for d in self.skipped],
            "not_attempted": [d.isoformat() for d in self.not_attempted],
            "total": self.total.to_dict(),
            "ok": self.ok,
        }


SinkFactory = Callable[[dt.date], Sink]


def _factory(
    output: str | os.PathLike[str] | SinkFactory,
    *,
    format: str | None,
    table: str | None,
    lineage: bool,
    many: bool,
) -> SinkFactory:
    if callable(output):
        return output
    spec = os.fspath(output)
    if is_database(spec):
        # One row per video and list: the list's date is the snapshot day.
        return lambda day: open_output(
            spec, table=table, snapshot=True, day=day, record_type=RankedVideo, lineage=lineage
        )
    if many and DATE_FIELD not in spec:
        raise InvalidParameterError(
            f"{spec!r} holds no {DATE_FIELD}: a backfill writes one output per list, so "
            "name it with the list's date, e.g. 'ranking/{date}.parquet'"
        )
    return lambda day: open_output(spec, format=format, day=day, record_type=RankedVideo)


async def crawl_ranking_range(
    client: KeyAPIClient,
    output: str | os.PathLike[str] | SinkFactory,
    *,
    region: str,
    video_rank_field: int,
    rank_type: int,
    dates: Iterable[dt.date | str] | None = None,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    max_pages: int | None = None,
    product_category_id: str | int | None = None,
    created_by_ai: bool | None = None,
    format: str | None = None,
    table: str | None = None,
    resume: bool = True,
    lineage: bool = True,
    on_list: Callable[[dt.date, CrawlReport], None] | None = None,
    stop: asyncio.Event | None = None,
    stop_grace: float = DEFAULT_STOP_GRACE,
) -> RangeReport:
    """Crawl every ranking list of ``dates`` (or ``start``..``end``, see
    :func:`ranking_dates`) into its own output; return the :class:`RangeReport`.

    ``output``: a path holding ``{date}`` (the list's date; format as for the CLI, or
    ``format``), a ``postgresql://`` DSN with ``table`` (snapshot mode keyed by the list's
    date), or a function of the date returning a sink. Lists run one after another, each
    resumable; with ``resume`` a list already complete makes no request and is listed in
    ``skipped``. ``on_list(date, report)`` is called after each list. The other
    parameters are those of :func:`~keyapi_async.crawl_video_ranking`.
    """
    days = ranking_dates(rank_type, start=start, end=end, dates=dates)
    for day in days:  # every parameter checked before the first request
        ranking_query(
            date=day, region=region, video_rank_field=video_rank_field, rank_type=rank_type,
            product_category_id=product_category_id, created_by_ai=created_by_ai,
        )
    make = _factory(output, format=format, table=table, lineage=lineage, many=len(days) > 1)
    sinks = {day: make(day) for day in days}  # bad formats and missing extras fail here
    result = RangeReport()
    for position, day in enumerate(days):
        if stop is not None and stop.is_set():
            result.not_attempted = days[position:]
            break
        try:
            report = await crawl_video_ranking(
                client, sinks[day], date=day, region=region,
                video_rank_field=video_rank_field, rank_type=rank_type, max_pages=max_pages,
                product_category_id=product_category_id, created_by_ai=created_by_ai,
                resume=resume, lineage=lineage, stop=stop, stop_grace=stop_grace,
            )
        except KeyAPIError as exc:
            partial: CrawlReport | None = getattr(exc, "report", None)
            if partial is not None:
                result.lists[day] = partial
                if on_list is not None:
                    on_list(day, partial)
            if exc.fatal or partial is None or isinstance(exc, InvalidParameterError):
                result.not_attempted = days[position + 1:]
                exc.report = result  # type: ignore[attr-defined]
                raise
            continue  # a page that failed after its retries: the next list still runs
        result.lists[day] = report
        if report.pages == 0 and report.requests == 0 and report.aborted is None:
            result.skipped.append(day)  # nothing left to fetch: complete (or max_pages)
        if on_list is not None:
            on_list(day, report)
    return result
