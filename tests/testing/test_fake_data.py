"""Synthetic data: spec shapes, determinism, unknown ids, ranking order and pages."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from keyapi_async.testing import FakeKeyAPI

from .fake_api_helpers import DETAIL, RANKING, Get, ranking

# Field -> JSON type, straight from the OpenAPI schemas of the two endpoints.
DETAIL_FIELDS: dict[str, type] = {
    "create_time": str, "created_by_ai": str, "data_size": str, "duration": int,
    "height": str, "ratio": str, "reflow_cover": str, "region": str, "sales_flag": int,
    "total_comments_cnt": int, "total_digg_1d_cnt": int, "total_digg_30d_cnt": int,
    "total_digg_7d_cnt": int, "total_digg_cnt": int, "total_favorites_cnt": int,
    "total_shares_cnt": int, "total_video_sale_cnt": int, "total_video_sale_gmv_amt": int,
    "total_views_1d_cnt": int, "total_views_30d_cnt": int, "total_views_7d_cnt": int,
    "total_views_cnt": int, "unique_id": str, "user_id": str, "video_desc": str,
    "video_id": str, "width": str,
}  # fmt: skip
RANKING_FIELDS: dict[str, type] = {
    "avatar": str, "category": str, "create_time": str, "duration": int, "nick_name": str,
    "product_category_list": str, "reflow_cover": str, "region": str, "sales_flag": int,
    "total_comments_cnt": int, "total_digg_cnt": int, "total_favorites_cnt": int,
    "total_shares_cnt": int, "total_video_sale_cnt": int, "total_video_sale_gmv_amt": int,
    "total_views_cnt": int, "unique_id": str, "user_id": str, "video_desc": str,
    "video_id": str, "video_products": str, "created_by_ai": str,
}  # fmt: skip
ID19 = re.compile(r"[1-9][0-9]{18}")


def check_shape(record: dict[str, Any], fields: dict[str, type]) -> None:
    assert set(record) == set(fields)
    for name, kind in fields.items():
        assert type(record[name]) is kind, name
    assert ID19.fullmatch(record["video_id"]) and ID19.fullmatch(record["user_id"])
    assert record["created_by_ai"] in ("true", "false")
    assert 1_400_000_000 < int(record["create_time"]) < 1_767_225_600
    for name, value in record.items():
        if name.endswith(("_cnt", "_amt")):
            assert value >= 0 or value == -99999, name


async def test_detail_records_match_the_spec(get: Get) -> None:
    async with FakeKeyAPI(known_ratio=1.0) as server:
        ids = server.make_ids(200)
        records = [server.detail_record(i) for i in ids]
        for record in records:
            check_shape(record, DETAIL_FIELDS)
            assert record["data_size"].isdigit() and record["width"].isdigit()
        # The harsh parts of real data all show up in a couple of hundred records.
        assert any(r["region"] == "" for r in records)
        assert any(v == -99999 for r in records for v in r.values())
        assert any(r["total_views_cnt"] == 0 or r["total_digg_cnt"] == 0 for r in records)
        assert any(not r["video_desc"].isascii() for r in records)
        reply = await get(server, DETAIL, {"video_ids": ",".join(ids[:10])})
        body = reply.json()
        assert reply.status == 200 and body["code"] == 0 and body["message"] == "success"
        assert sorted(body["data"], key=lambda r: r["video_id"]) == sorted(
            records[:10], key=lambda r: r["video_id"]
        )


async def test_unknown_ids_are_omitted(get: Get) -> None:
    async with FakeKeyAPI(known_ratio=0.5) as server:
        known, unknown = server.make_ids(4, known=True), server.make_ids(4, known=False)
        assert all(map(server.is_known, known)) and not any(map(server.is_known, unknown))
        assert not set(known) & set(unknown)
        reply = await get(server, DETAIL, {"video_ids": ",".join(unknown + known + known[:1])})
        returned = [r["video_id"] for r in reply.json()["data"]]
        assert sorted(returned) == sorted(known)  # deduplicated, unknown ones absent
        with pytest.raises(KeyError):
            server.detail_record(unknown[0])
        only_unknown = await get(server, DETAIL, {"video_ids": ",".join(unknown)})
        assert only_unknown.json()["data"] == []
        assert server.stats().credits_spent == 2  # an empty code-0 answer still costs


async def test_known_ratio_is_roughly_respected() -> None:
    server = FakeKeyAPI(known_ratio=0.9)
    ids = server.make_ids(2000)
    assert len(set(ids)) == 2000 and all(ID19.fullmatch(i) for i in ids)
    assert 0.85 < sum(map(server.is_known, ids)) / len(ids) < 0.95
    assert server.make_ids(10) == ids[:10]  # a longer list extends a shorter one


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = (
        FakeKeyAPI(seed=7, known_ratio=1),
        FakeKeyAPI(seed=7, known_ratio=1),
        FakeKeyAPI(seed=8, known_ratio=1),
    )
    ids = a.make_ids(20)
    assert ids == b.make_ids(20) and ids != c.make_ids(20)
    assert [a.detail_record(i) for i in ids] == [b.detail_record(i) for i in ids]
    assert [a.detail_record(i) for i in ids] != [c.detail_record(i) for i in ids]
    args = ("2024-05-01", "US", 1, 1)
    assert a.ranking_records(*args) == b.ranking_records(*args)
    assert a.ranking_records(*args) != c.ranking_records(*args)
    assert FakeKeyAPI(seed=7, known_ratio=0.5).make_ids(5, known=True) == FakeKeyAPI(
        seed=7, known_ratio=0.5
    ).make_ids(5, known=True)


def test_detail_record_is_a_copy() -> None:
    server = FakeKeyAPI(known_ratio=1.0)
    [video_id] = server.make_ids(1)
    server.detail_record(video_id)["video_desc"] = "changed"
    assert server.detail_record(video_id)["video_desc"] != "changed"


@pytest.mark.parametrize(("field", "metric"), [(1, "total_views_cnt"), (2, "total_video_sale_cnt")])
def test_ranking_lists_are_sorted_and_well_formed(field: int, metric: str) -> None:
    server = FakeKeyAPI(ranking_length=300)
    records = server.ranking_records("2024-05-01", "GB", field, 2)
    assert len(records) == 300
    values = [r[metric] for r in records]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    assert len({r["video_id"] for r in records}) == 300
    assert all(server.is_known(r["video_id"]) for r in records)
    for record in records:
        check_shape(record, RANKING_FIELDS)
        assert record["region"] == "GB"
        categories = msgspec.json.decode(record["product_category_list"])
        assert all(set(c) == {"category_name", "category_id"} for c in categories)
        assert re.fullmatch(r"\[(17[0-9]{17}(,17[0-9]{17})*)?\]", record["video_products"])
    lists = {r["product_category_list"] for r in records}
    assert "[]" in lists and any(s.startswith('[{ "category_name":') for s in lists)
    assert "[]" in {r["video_products"] for r in records}
    assert any(not r["nick_name"].isascii() for r in records)


def test_ranking_filters_shape_the_list() -> None:
    server = FakeKeyAPI(ranking_length=50)
    records = server.ranking_records("2024-05-01", "US", 2, 1, 601450, created_by_ai=True)
    assert all(r["created_by_ai"] == "true" for r in records)
    for record in records:
        ids = [c["category_id"] for c in msgspec.json.decode(record["product_category_list"])]
        assert "601450" in ids and record["sales_flag"] in (1, 2)
    unfiltered = server.ranking_records("2024-05-01", "US", 2, 1)
    assert unfiltered != records


async def test_ranking_pages(get: Get) -> None:
    async with FakeKeyAPI(ranking_length=25) as server:
        full = server.ranking_records("2024-05-01", "US", 1, 1)
        pages = []
        for page_num in range(1, 5):
            reply = await get(server, RANKING, ranking(page_num=str(page_num), page_size="7"))
            assert reply.status == 200 and reply.json()["code"] == 0
            pages.append(reply.json()["data"])
        assert [len(p) for p in pages] == [7, 7, 7, 4]
        assert [r for p in pages for r in p] == full
        past_end = await get(server, RANKING, ranking(page_num="100000", page_size="10"))
        assert past_end.status == 200
        assert (past_end.json()["code"], past_end.json()["data"]) == (0, [])
        other = await get(server, RANKING, ranking(rank_type="3", page_size="3"))
        assert other.json()["data"] != full[:3]


def test_ranking_length_zero_is_always_empty() -> None:
    assert FakeKeyAPI(ranking_length=0).ranking_records("2024-05-01", "US", 1, 1) == []


def test_make_ids_refuses_impossible_filters() -> None:
    with pytest.raises(ValueError):
        FakeKeyAPI(known_ratio=0.0).make_ids(1, known=True)
    with pytest.raises(ValueError):
        FakeKeyAPI(known_ratio=1.0).make_ids(1, known=False)
