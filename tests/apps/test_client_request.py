"""client.request: any endpoint, untyped, through the same pipeline (limiter, retries,
errors, budget, events, cache); its path and parameters checked before anything is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

from .fake_client import CANARY, DETAIL, RANKING, client


@pytest.fixture
async def fake() -> AsyncIterator[FakeKeyAPI]:
    async with FakeKeyAPI(api_keys=[CANARY]) as server:
        yield server


async def test_the_detail_endpoint_untyped(fake: FakeKeyAPI) -> None:
    ids = fake.make_ids(3, known=True)
    async with client(fake) as api:
        raw = await api.request(DETAIL, {"video_ids": ",".join(ids)})
    assert isinstance(raw, ka.RawResponse)
    assert raw.code == 0 and raw.message == "success" and raw.request_id
    by_id = {record["video_id"]: record for record in raw.data}
    assert sorted(by_id) == sorted(ids)
    assert by_id[ids[0]] == fake.detail_record(ids[0])  # as sent: numbers stay strings


async def test_parameters_are_sent_as_the_api_writes_them(fake: FakeKeyAPI) -> None:
    async with client(fake) as api:
        raw = await api.request(RANKING, {
            "date": "2025-01-06", "region": "US", "video_rank_field": 1, "rank_type": 2,
            "page_num": 2, "page_size": 5, "created_by_ai": False, "product_category_id": None,
        })
    [sent] = fake.requests
    assert sent.params == {
        "date": "2025-01-06", "region": "US", "video_rank_field": "1", "rank_type": "2",
        "page_num": "2", "page_size": "5", "created_by_ai": "false",
    }
    assert len(raw.data) == 5


async def test_same_errors_retries_budget_and_events_as_typed_calls() -> None:
    faults = Faults(http_5xx={1})
    async with FakeKeyAPI(api_keys={CANARY: 2}, faults=faults) as fake:
        events: list[ka.Event] = []
        async with client(fake, max_credits=5, on_event=events.append) as api:
            ok = await api.request(DETAIL, {"video_ids": fake.make_ids(1)[0]})  # 500, retried
            assert ok.code == 0 and api.stats.retries == 1
            with pytest.raises(ka.BadRequestError):
                await api.request(RANKING, {"date": "2025-01-06"})  # a 400 from the server
            await api.request(DETAIL, {"video_ids": fake.make_ids(1)[0]})
            with pytest.raises(ka.QuotaExceededError):  # the key's 2 credits are used up
                await api.request(DETAIL, {"video_ids": fake.make_ids(2)[1]})
            with pytest.raises(ka.EndpointNotFoundError):  # no such endpoint: a bare 404
                await api.request("/v1/tiktok/nothing/here")
            # Against the budget: 2 charged, the 500's charge unknown, the refusals free.
            assert (api.stats.credits_spent, api.stats.credits_unknown) == (2, 1)
            assert api.credits_remaining == 2
    finished = [e for e in events if isinstance(e, ka.AttemptFinished)]
    assert len(finished) == len(fake.requests) + 1 == 6  # the fake logs API paths only
    assert [e.error for e in finished] == [
        "ServerError", None, "BadRequestError", None, "QuotaExceededError",
        "EndpointNotFoundError",
    ]


async def test_answers_are_cached_by_path_and_parameters(fake: FakeKeyAPI) -> None:
    [vid] = fake.make_ids(1, known=True)
    async with client(fake, cache=ka.MemoryCache()) as api:
        first = await api.request(DETAIL, {"video_ids": vid})
        assert await api.request(DETAIL, {"video_ids": vid}) == first
        await api.request(DETAIL, {"video_ids": vid}, use_cache=False)
        assert api.stats.cache_hits == 1
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    "path",
    ["v1/no/leading/slash", "https://evil.example/v1/x", "//evil.example/v1/x",
     "/v1/../admin", "/v1/./x", "/v1/x?video_ids=1", "/v1/x#frag", "/v1/x y", "", None,
     "/v1/%2e%2e/x"],
)
async def test_a_bad_path_is_refused_before_anything_is_sent(
    fake: FakeKeyAPI, path: Any
) -> None:
    async with client(fake) as api:
        with pytest.raises(ka.InvalidParameterError):
            await api.request(path)
    assert fake.requests == []


@pytest.mark.parametrize(
    "params",
    [["video_ids", "1"], {"video_ids": 1.5}, {"video_ids": b"1"}, {"": "x"}, {"a b": "x"},
     {"video_ids": "1\n2"}, {1: "x"}],
)
async def test_bad_parameters_are_refused_before_anything_is_sent(
    fake: FakeKeyAPI, params: Any
) -> None:
    async with client(fake) as api:
        with pytest.raises(ka.InvalidParameterError):
            await api.request(DETAIL, params)
    assert fake.requests == []


async def test_the_key_is_refused_in_a_path_or_parameter_and_never_shown(
    fake: FakeKeyAPI,
) -> None:
    async with client(fake) as api:
        for path, params in [(DETAIL, {"token": CANARY}), (DETAIL, {"x": f"a{CANARY}b"}),
                             (f"/v1/{CANARY}", None)]:
            with pytest.raises(ka.InvalidParameterError) as caught:
                await api.request(path, params)
            assert CANARY not in str(caught.value) and CANARY not in repr(caught.value)
    assert fake.requests == []
