"""Bearer auth and parameter validation, with the spec's bodies and messages."""

from __future__ import annotations

import uuid

import pytest

from keyapi_async.testing import FakeKeyAPI

from .fake_api_helpers import DETAIL, RANKING, Get, ranking


def assert_error(reply_json: dict[str, object], code: int, message: str) -> None:
    assert reply_json["code"] == code
    assert reply_json["data"] is None
    assert reply_json["message"] == message
    uuid.UUID(str(reply_json["requestId"]))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "apiKey is null"),
        ({"Authorization": ""}, "apiKey is null"),
        ({"Authorization": "Bearer "}, "apiKey is null"),
        ({"Authorization": "Bearer nope"}, "apiKey is invalid"),
        ({"Authorization": "test-key"}, "apiKey is invalid"),
        ({"Authorization": "Basic test-key"}, "apiKey is invalid"),
    ],
)
async def test_auth_failures(
    fake_keyapi: FakeKeyAPI, get: Get, headers: dict[str, str], message: str
) -> None:
    reply = await get(fake_keyapi, params={"video_ids": "1"}, key=None, headers=headers)
    assert reply.status == 401
    assert_error(reply.json(), 401, message)
    assert fake_keyapi.stats().credits_spent == 0


async def test_revoked_key_is_invalid(get: Get) -> None:
    async with FakeKeyAPI(["a", "b"]) as server:
        assert (await get(server, params={"video_ids": "1"}, key="a")).status == 200
        server.revoke_key("a")
        reply = await get(server, params={"video_ids": "1"}, key="a")
        assert reply.status == 401
        assert_error(reply.json(), 401, "apiKey is invalid")
        assert (await get(server, params={"video_ids": "1"}, key="b")).status == 200
        assert [r.key for r in server.requests] == ["a", "a", "b"]


async def test_bearer_scheme_is_case_insensitive(fake_keyapi: FakeKeyAPI, get: Get) -> None:
    headers = {"Authorization": "bearer test-key"}
    reply = await get(fake_keyapi, params={"video_ids": "1"}, key=None, headers=headers)
    assert reply.status == 200


DETAIL_CASES = [
    ({}, "Missing required parameter: video_ids"),
    ({"video_ids": ""}, "Missing required parameter: video_ids"),
    ({"video_ids": ",".join(["1"] * 11)}, "Invalid parameter: video_ids"),
    ({"video_ids": "123,abc"}, "Invalid parameter: video_ids"),
    ({"video_ids": "123,"}, "Invalid parameter: video_ids"),
    ({"video_ids": "-5"}, "Invalid parameter: video_ids"),
    ({"video_ids": "1 ,2"}, "Invalid parameter: video_ids"),
]


RANKING_CASES = [
    *(
        (ranking(**{name: None}), f"Missing required parameter: {name}")
        for name in ("date", "region", "video_rank_field", "rank_type", "page_num", "page_size")
    ),
    (ranking(region=""), "Missing required parameter: region"),
    (ranking(date="2024/05/01"), "Invalid parameter: date"),
    (ranking(date="2024-5-1"), "Invalid parameter: date"),
    (ranking(date="2023-02-29"), "Invalid parameter: date"),
    (ranking(date="20240501"), "Invalid parameter: date"),
    (ranking(video_rank_field="3"), "Invalid parameter: video_rank_field"),
    (ranking(video_rank_field="0"), "Invalid parameter: video_rank_field"),
    (ranking(rank_type="4"), "Invalid parameter: rank_type"),
    (ranking(rank_type="x"), "Invalid parameter: rank_type"),
    (ranking(page_num="0"), "Invalid parameter: page_num"),
    (ranking(page_num="100001"), "Invalid parameter: page_num"),
    (ranking(page_num="1.0"), "Invalid parameter: page_num"),
    (ranking(page_size="0"), "Invalid parameter: page_size"),
    (ranking(page_size="11"), "Invalid parameter: page_size"),
    (ranking(page_size="-1"), "Invalid parameter: page_size"),
    (ranking(created_by_ai="yes"), "Invalid parameter: created_by_ai"),
    (ranking(created_by_ai="True"), "Invalid parameter: created_by_ai"),
    (ranking(product_category_id="abc"), "Invalid parameter: product_category_id"),
    # The first problem in spec order wins.
    (ranking(date=None, page_size="99"), "Missing required parameter: date"),
]


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [(DETAIL, p, m) for p, m in DETAIL_CASES] + [(RANKING, p, m) for p, m in RANKING_CASES],
)
async def test_validation(
    fake_keyapi: FakeKeyAPI, get: Get, path: str, params: dict[str, str], message: str
) -> None:
    reply = await get(fake_keyapi, path, params)
    assert reply.status == 400
    assert_error(reply.json(), 400, message)
    [record] = fake_keyapi.requests
    assert (record.status, record.code, record.credit) == (400, 400, False)


@pytest.mark.parametrize(
    "params",
    [
        {"video_ids": ",".join(str(7_000_000_000_000_000_000 + i) for i in range(10))},
        {"video_ids": "0"},
    ],
)
async def test_valid_detail_params(
    fake_keyapi: FakeKeyAPI, get: Get, params: dict[str, str]
) -> None:
    reply = await get(fake_keyapi, DETAIL, params)
    assert reply.status == 200
    assert reply.json()["code"] == 0


@pytest.mark.parametrize(
    "params",
    [
        ranking(date="2024-02-29", page_num="100000", page_size="1"),
        ranking(video_rank_field="2", rank_type="3", created_by_ai="false"),
        ranking(product_category_id="601450", created_by_ai="true", extra="ignored"),
    ],
)
async def test_valid_ranking_params(
    fake_keyapi: FakeKeyAPI, get: Get, params: dict[str, str]
) -> None:
    reply = await get(fake_keyapi, RANKING, params)
    assert reply.status == 200
    assert reply.json()["code"] == 0


async def test_auth_is_checked_before_params(fake_keyapi: FakeKeyAPI, get: Get) -> None:
    reply = await get(fake_keyapi, DETAIL, {}, key="wrong")
    assert reply.status == 401


async def test_unknown_path_is_404_and_not_logged(fake_keyapi: FakeKeyAPI, get: Get) -> None:
    reply = await get(fake_keyapi, "/v1/tiktok/video/nothing", {})
    assert reply.status == 404
    assert fake_keyapi.requests == []
