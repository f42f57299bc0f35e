"""A sink of the user's own learns the missing ids and can resume (issue 12, point 5).

The optional ``write_missing(ids)`` receives the ids the API did not know, batch by batch
(never more than one batch's ids at a time, so memory stays bounded whatever the crawl's
size); the optional ``resume_ids()`` tells a resumed crawl what to skip. Both are looked
up with ``getattr``: a sink with only ``write`` and ``close`` works as before.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability

KEY = "test-key"
DETAIL = "/v1/tiktok/video/detail/analytics"


class TableSink:
    """A database table, in memory: rows keyed by id, plus a table of unknown ids."""

    def __init__(self, rows: dict[str, Any] | None = None, unknown: set[str] | None = None):
        self.rows: dict[str, Any] = dict(rows or {})
        self.unknown: set[str] = set(unknown or ())
        self.missing_calls: list[list[str]] = []
        self.resume_calls = 0
        self.closed = False
        self.on_resume: Any = None

    async def write(self, records: Sequence[ka.VideoDetail]) -> None:
        for record in records:
            assert record.video_id not in self.rows, "a record written twice"
            self.rows[record.video_id] = record

    async def write_missing(self, ids: Sequence[str]) -> None:
        self.missing_calls.append(list(ids))
        self.unknown.update(ids)

    async def resume_ids(self) -> AsyncIterator[str]:
        self.resume_calls += 1
        if self.on_resume is not None:
            self.on_resume()
        for vid in self.rows:
            yield vid
        for vid in self.unknown:
            yield vid

    async def close(self) -> None:
        self.closed = True


def asked(server: FakeKeyAPI, start: int = 0) -> list[str]:
    return [vid for r in server.requests[start:] if r.path == DETAIL
            for vid in r.params["video_ids"].split(",")]


async def test_missing_ids_reach_the_sink_batch_by_batch_and_resume_skips_them() -> None:
    async with FakeKeyAPI() as server:
        ids = server.make_ids(600)
        unknown = {i for i in ids if not server.is_known(i)}
        sink = TableSink()
        requests_at_resume: list[int] = []
        sink.on_resume = lambda: requests_at_resume.append(len(server.requests))
        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=2000) as client:
            report = await ka.crawl_video_details(client, ids, sink)
            assert report.ok and report.missing == len(unknown) > 0
            assert sink.unknown == unknown and set(sink.rows) == set(ids) - unknown
            # Bounded: one call per batch with unknown ids, never more than a batch's ids.
            assert all(0 < len(call) <= 10 for call in sink.missing_calls)
            assert sum(map(len, sink.missing_calls)) == len(unknown)
            assert requests_at_resume == [0]  # asked once, before the first request

            # The same table again: everything is stored or known missing, no request.
            before = len(server.requests)
            again = await ka.crawl_video_details(client, ids, TableSink(sink.rows, sink.unknown))
            assert again.ok and again.skipped_resumed == len(ids)
            assert len(server.requests) == before

            # Half the table lost: only those ids are asked for again.
            kept = dict(list(sink.rows.items())[: len(sink.rows) // 2])
            partial = TableSink(kept, sink.unknown)
            third = await ka.crawl_video_details(client, ids, partial)
        assert third.ok and third.skipped_resumed == len(kept) + len(unknown)
        assert sorted(asked(server, before)) == sorted(set(sink.rows) - set(kept))
        assert partial.resume_calls == 1 and partial.missing_calls == []


async def test_resume_false_does_not_ask_the_sink_what_it_holds() -> None:
    async with FakeKeyAPI() as server:
        ids = server.make_ids(50)
        sink = TableSink()
        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=2000) as client:
            await ka.crawl_video_details(client, ids, sink, resume=False)
        assert sink.resume_calls == 0 and len(asked(server)) == 50


async def test_a_plain_sink_needs_neither_method() -> None:
    class Plain:
        def __init__(self) -> None:
            self.records: list[Any] = []

        async def write(self, records: Sequence[Any]) -> None:
            self.records.extend(records)

        async def close(self) -> None:
            pass

    async with FakeKeyAPI() as server:
        ids = server.make_ids(80)
        plain = Plain()
        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=2000) as client:
            report = await ka.crawl_video_details(client, ids, plain)
        assert report.ok and len(plain.records) == report.fetched
        assert isinstance(plain, ka.Sink)


async def test_write_missing_failing_stops_like_a_full_disk() -> None:
    class FullTable(TableSink):
        async def write_missing(self, ids: Sequence[str]) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    async with FakeKeyAPI() as server:
        ids = server.make_ids(300)
        sink = FullTable()
        async with ka.KeyAPIClient(KEY, base_url=server.url, qps=2000) as client:
            with pytest.raises(ka.OutputWriteError, match="No space left") as caught:
                await ka.crawl_video_details(client, ids, sink)
        report = caught.value.report  # type: ignore[attr-defined]
        assert report.accounted == report.requested == 300
        # The unknown ids that could not be recorded are failed (a resume asks again);
        # the records of that batch were written and are counted fetched.
        failed = set(report.failed)
        assert failed and all(not server.is_known(i) for i in failed)
        assert report.fetched == len(sink.rows) and sink.closed
