"""A server that floods answers with records nobody asked for: every path that yields records
yields only the ids asked, once each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from conftest import API_KEY
from reliability.hostile import Hostile

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability

FAKE = FakeKeyAPI()
STRANGERS = FAKE.make_ids(1000, known=True)[-100:]  # known records, never asked for


async def flood(request: web.Request) -> web.Response:
    """Each asked id's record three times, 1,000 records of ids not asked, and records
    with no video_id or a null one: about 1,000 records for 10 ids."""
    asked = [i for i in request.query["video_ids"].split(",") if FAKE.is_known(i)]
    data: list[dict[str, object]] = []
    for _ in range(3):
        data += [FAKE.detail_record(i) for i in asked]
    data += [FAKE.detail_record(i) for i in STRANGERS] * 10
    nameless = FAKE.detail_record(STRANGERS[0])
    del nameless["video_id"]
    data += [nameless, {**nameless, "video_id": None}]
    return web.json_response({"code": 0, "data": data, "requestId": "flood"})


@pytest.fixture
async def client() -> AsyncIterator[ka.KeyAPIClient]:
    async with Hostile(flood) as server, ka.KeyAPIClient(
        API_KEY, base_url=server.url, qps=1000
    ) as client:
        yield client


IDS = FAKE.make_ids(40)  # some known, some not
KNOWN = [i for i in IDS if FAKE.is_known(i)]


async def test_iter_video_details_yields_each_asked_id_once(client: ka.KeyAPIClient) -> None:
    got = [v.video_id async for v in client.iter_video_details(IDS)]
    assert sorted(got) == sorted(KNOWN)  # 10,010 records for 10 ids before


async def test_video_details_and_batches_agree(client: ka.KeyAPIClient) -> None:
    assert [v.video_id for v in await client.video_details(IDS)] == KNOWN
    batches = [b async for b in client.iter_detail_batches(IDS)]
    for batch in batches:
        ids = [v.video_id for v in batch.videos]
        assert len(ids) == len(set(ids)) and set(ids) <= set(batch.ids)
        # The nameless records could be any id without a record: those are failed, never
        # reported missing (a resume asks for them again).
        assert batch.missing == () and set(batch.failed) == set(batch.ids) - set(ids)


async def test_a_crawl_stores_each_asked_id_once(client: ka.KeyAPIClient, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    report = await ka.crawl_video_details(client, IDS, ka.JsonlSink(out))
    stored = [msgspec.json.decode(line)["video_id"] for line in out.read_bytes().splitlines()]
    assert sorted(stored) == sorted(KNOWN) and report.fetched == len(KNOWN)
    assert report.missing == 0 and sorted(report.failed) == sorted(set(IDS) - set(KNOWN))
    assert all("no readable video_id" in r for r in report.failed.values())
    assert client.stats.undecodable_records == 2 * 4  # two nameless records an answer
