"""Every fault, at rate 1.0 and on a schedule, plus fail_first and revoke_after."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import msgspec
import pytest

from keyapi_async.testing import FakeKeyAPI, Faults
from keyapi_async.testing.faults import CONTROL_CHARS

from .fake_api_helpers import DETAIL, RANKING, Get, Reply, ranking

Check = Callable[[Reply], None]


def json_error(status: int, code: int, message: str) -> Check:
    def check(reply: Reply) -> None:
        body = reply.json()
        assert reply.status == status
        assert (body["code"], body["data"], body["message"]) == (code, None, message)

    return check


def html_502(reply: Reply) -> None:
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b"502 Bad Gateway" in reply.body
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(reply.body)


def truncated(reply: Reply) -> None:
    assert reply.status == 200
    assert reply.body.startswith(b'{"code":0')
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(reply.body)


def control_chars(reply: Reply) -> None:
    assert reply.status == 200
    assert CONTROL_CHARS.encode() in reply.body
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(reply.body)  # strict JSON forbids raw control characters
    body = json.loads(reply.body, strict=False)  # the lenient stdlib parser copes
    assert body["code"] == 0 and all(CONTROL_CHARS in r["video_desc"] for r in body["data"])


def real_arrays(reply: Reply) -> None:
    assert reply.status == 200
    body = reply.json()
    assert body["data"]
    for record in body["data"]:
        assert isinstance(record["product_category_list"], list)
        assert all(isinstance(p, int) and p > 2**53 for p in record["video_products"])
    assert b'"video_products":[17' in reply.body or b'"video_products":[]' in reply.body


CHECKS: dict[str, Check] = {
    "http_5xx": json_error(500, 500, "Internal server error"),
    "body_429": json_error(200, 429, "qps limit exceeded"),
    "body_500": json_error(200, 500, "Internal server error"),
    "html_502": html_502,
    "truncated": truncated,
    "control_chars": control_chars,
    "real_arrays": real_arrays,
}
CHARGED = {"truncated", "control_chars", "real_arrays"}
# Parameters that give every answer some records to damage.
RICH = ranking(page_size="5")


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_fault_at_rate_one(get: Get, name: str) -> None:
    async with FakeKeyAPI({"k": 10}, faults=Faults(**{name: 1.0})) as server:
        for _ in range(2):
            CHECKS[name](await get(server, RANKING, RICH, key="k"))
        stats = server.stats()
        assert stats.faults_injected == {name: 2}
        assert stats.credits_spent == (2 if name in CHARGED else 0)
        assert server.credits("k") == (8 if name in CHARGED else 10)
        assert all(r.fault == name for r in server.requests)


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_fault_on_schedule(get: Get, name: str) -> None:
    async with FakeKeyAPI(faults=Faults(**{name: frozenset({2, 4})})) as server:
        replies = [await get(server, RANKING, RICH) for _ in range(5)]
        for number in (2, 4):
            CHECKS[name](replies[number - 1])
        for number in (1, 3, 5):
            assert replies[number - 1].status == 200
            assert msgspec.json.decode(replies[number - 1].body)["code"] == 0
        assert [r.fault for r in server.requests] == [None, name, None, name, None]


async def test_schedule_counts_every_api_request(get: Get) -> None:
    async with FakeKeyAPI(faults=Faults(body_500={3})) as server:
        await get(server, params={}, key="bad")  # 1: 401, still numbered
        await get(server, params={})  # 2: 400
        reply = await get(server, params={"video_ids": "1"})  # 3
        assert reply.json()["code"] == 500


@pytest.mark.parametrize("status", [502, 503])
async def test_http_5xx_status_choice(get: Get, status: int) -> None:
    message = {502: "Bad Gateway", 503: "Service Unavailable"}[status]
    async with FakeKeyAPI(faults=Faults(http_5xx=1.0, status_5xx=status)) as server:
        json_error(status, status, message)(await get(server, params={"video_ids": "1"}))


async def test_reset_closes_without_an_answer(get: Get) -> None:
    async with FakeKeyAPI(faults=Faults(reset=1.0)) as server:
        with pytest.raises(aiohttp.ClientError):
            await get(server, params={"video_ids": "1"})
        records = server.requests
        # aiohttp itself retries an idempotent request once after a dropped connection.
        assert records and all((r.status, r.code, r.fault) == (0, None, "reset") for r in records)
        assert server.stats().by_status == {0: len(records)}


async def test_reset_on_schedule(get: Get) -> None:
    async with FakeKeyAPI(faults=Faults(reset=frozenset({2, 3}))) as server:
        assert (await get(server, params={"video_ids": "1"})).status == 200
        with pytest.raises(aiohttp.ClientError):
            await get(server, params={"video_ids": "1"})
        assert (await get(server, params={"video_ids": "1"})).status == 200
        assert [r.fault for r in server.requests] == [None, "reset", "reset", None]


async def test_slow_answers_outlast_a_client_timeout(get: Get) -> None:
    async with FakeKeyAPI({"k": 5}, faults=Faults(slow=frozenset({1}))) as server:
        with pytest.raises(asyncio.TimeoutError):
            await get(server, params={"video_ids": "1"}, key="k", timeout=0.2)
        [record] = server.requests
        assert (record.fault, record.credit) == ("slow", True)  # charged all the same
        assert server.credits("k") == 4
        assert (await get(server, params={"video_ids": "1"}, key="k")).status == 200


async def test_slow_answer_does_arrive(get: Get) -> None:
    faults = Faults(slow=1.0, slow_seconds=0.05)
    async with FakeKeyAPI(faults=faults, known_ratio=1) as server:
        ids = server.make_ids(2)
        reply = await get(server, params={"video_ids": ",".join(ids)})
        assert reply.status == 200 and len(reply.json()["data"]) == 2


async def test_fail_first_per_distinct_query(get: Get) -> None:
    async with FakeKeyAPI(faults=Faults(fail_first=2, fail_first_status=503)) as server:
        one, two = {"video_ids": "1"}, {"video_ids": "2"}
        statuses = [(await get(server, params=p)).status for p in (one, one, two, one, two, two)]
        assert statuses == [503, 503, 503, 200, 503, 200]
        assert (await get(server, RANKING, RICH)).status == 503  # another path, another query
        assert server.stats().faults_injected == {"fail_first": 5}
        assert server.stats().credits_spent == 2


async def test_revoke_after(get: Get) -> None:
    async with FakeKeyAPI(["a", "b"], faults=Faults(revoke_after=2)) as server:
        statuses = [(await get(server, params={"video_ids": "1"}, key="a")).status for _ in "xxxx"]
        assert statuses == [200, 200, 401, 401]
        reply = await get(server, params={"video_ids": "1"}, key="a")
        assert reply.json()["message"] == "apiKey is invalid"
        assert [r.fault for r in server.requests][2:] == ["revoke_after"] * 3
        assert (await get(server, params={"video_ids": "1"}, key="b")).status == 200


async def test_faults_change_at_run_time(get: Get) -> None:
    async with FakeKeyAPI() as server:
        assert (await get(server, params={"video_ids": "1"})).status == 200
        server.faults = Faults(http_5xx=1.0)
        assert (await get(server, params={"video_ids": "1"})).status == 500
        server.faults = Faults()
        assert (await get(server, params={"video_ids": "1"})).status == 200


async def test_fault_rates_are_seeded(get: Get) -> None:
    async def pattern(seed: int) -> list[int]:
        async with FakeKeyAPI(seed=seed, faults=Faults(body_500=0.5)) as server:
            for _ in range(30):
                await get(server, params={"video_ids": "1"})
            return [r.code or 0 for r in server.requests]

    first, again, other = await pattern(1), await pattern(1), await pattern(2)
    assert first == again and first != other
    assert 0 < first.count(500) < 30


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError):
        Faults(http_5xx=1.5)
    with pytest.raises(ValueError):
        Faults(reset={0})
    with pytest.raises(ValueError):
        Faults(status_5xx=504)
    with pytest.raises(ValueError):
        Faults(revoke_after=0)


async def test_control_chars_also_hit_detail_answers(get: Get) -> None:
    async with FakeKeyAPI(known_ratio=1, faults=Faults(control_chars=1.0)) as server:
        ids = server.make_ids(3)
        reply = await get(server, DETAIL, {"video_ids": ",".join(ids)})
        control_chars(reply)
