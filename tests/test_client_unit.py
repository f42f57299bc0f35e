"""KeyAPIClient behaviour against mocked HTTP (aioresponses)."""

from __future__ import annotations

import asyncio
import gc
import logging
import traceback
import warnings
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aioresponses
import msgspec
import pytest
from aioresponses import CallbackResult
from conftest import API_KEY, DETAIL_URL, RANKING_URL, make_client

import keyapi_async as ka


def envelope(
    data: Any = None, code: int = 0, message: str = "success", rid: str = "rid-1"
) -> bytes:
    return msgspec.json.encode({"code": code, "message": message, "data": data, "requestId": rid})


def record(video_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "video_id": video_id,
        "create_time": "1657100315",
        "created_by_ai": "false",
        "height": "1024",
        "width": "576",
        "data_size": "1049064",
        "region": "",
        "total_favorites_cnt": -99999,
        "total_views_cnt": 211100,
        **extra,
    }


def sent_ids(m: aioresponses.aioresponses) -> list[list[str]]:
    """The video_ids of every request aioresponses saw, in order."""
    batches = []
    for (_, url), calls in m.requests.items():
        for _call in calls:
            batches.append(parse_qs(urlsplit(str(url)).query)["video_ids"][0].split(","))
    return batches


def request_count(m: aioresponses.aioresponses) -> int:
    return sum(len(calls) for calls in m.requests.values())


class Echo:
    """A detail endpoint that knows every id except those in `unknown`."""

    def __init__(self, unknown: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.unknown = unknown
        self.seen: list[list[str]] = []

    def __call__(self, url: Any, **kwargs: Any) -> CallbackResult:
        ids = kwargs["params"]["video_ids"].split(",")
        self.seen.append(ids)
        data = [record(i) for i in reversed(ids) if i not in self.unknown]
        return CallbackResult(status=200, body=envelope(data))


# -- configuration -------------------------------------------------------------------


def test_missing_key_names_the_environment_variable() -> None:
    with pytest.raises(ka.ConfigurationError, match="KEYAPI_API_KEY"):
        ka.KeyAPIClient()


def test_key_and_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYAPI_API_KEY", API_KEY)
    assert ka.KeyAPIClient().base_url == "https://api.keyapi.ai"
    monkeypatch.setenv("KEYAPI_BASE_URL", "https://proxy.example/")
    assert ka.KeyAPIClient().base_url == "https://proxy.example"
    assert ka.KeyAPIClient(base_url="http://127.0.0.1:9").base_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"qps": 0},
        {"qps": -1},
        {"qps": "fast"},
        {"qps": 10, "max_qps": 20},  # max_qps is the ceiling of qps="auto" only
        {"qps": "auto", "max_qps": 0},
        {"rate_limit_patience": -1},
        {"max_concurrency": 0},
        {"max_retries": -1},
        {"timeout": 0},
        {"base_url": "ftp://x"},
        {"base_url": "nohost"},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ka.ConfigurationError):
        make_client(**kwargs)


def test_plain_http_off_loopback_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.warns(UserWarning, match="unencrypted"):
        make_client(base_url="http://api.example.com")
    assert "unencrypted" in caplog.text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_client(base_url="http://127.0.0.1:8080")
        make_client(base_url="http://localhost:8080")


# -- batching ------------------------------------------------------------------------


async def test_ids_are_deduplicated_packed_by_ten_and_returned_in_input_order(
    mock_api: aioresponses.aioresponses,
) -> None:
    ids = [str(7_000_000_000_000_000_000 + i) for i in range(25)]
    given: list[str | int] = [*ids, ids[3], int(ids[7]), ids[0]]
    echo = Echo(unknown={ids[5]})
    mock_api.get(DETAIL_URL, callback=echo, repeat=True)
    async with make_client() as client:
        videos = await client.video_details(given)
    assert [len(b) for b in echo.seen] and all(len(b) <= 10 for b in echo.seen)
    assert len(echo.seen) == 3
    flat = [i for b in echo.seen for i in b]
    assert sorted(flat) == sorted(ids)  # every unique id sent exactly once
    assert [v.video_id for v in videos] == [i for i in ids if i != ids[5]]


async def test_empty_input_sends_nothing(mock_api: aioresponses.aioresponses) -> None:
    async with make_client() as client:
        assert await client.video_details([]) == []
        assert [v async for v in client.iter_video_details(iter(()))] == []
    assert request_count(mock_api) == 0


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "12 34",
        "1,2",
        "-5",
        "+5",
        "",
        " 1",
        "0",
        "000",
        None,
        1.5,
        True,
        -3,
        0,
        "1" * 21,
        "١٢٣",
        b"123",
    ],
)
async def test_invalid_id_is_refused_before_any_request(
    mock_api: aioresponses.aioresponses, bad: object
) -> None:
    mock_api.get(DETAIL_URL, callback=Echo(), repeat=True)
    async with make_client() as client:
        with pytest.raises(ka.InvalidParameterError) as info:
            await client.video_details(["7117191641181555995", bad])  # type: ignore[list-item]
    assert isinstance(info.value, ValueError)
    assert "position 1" in str(info.value)
    assert request_count(mock_api) == 0


async def test_a_single_string_is_not_taken_for_a_list_of_ids(
    mock_api: aioresponses.aioresponses,
) -> None:
    async with make_client() as client:
        with pytest.raises(ka.InvalidParameterError, match="wrap it in a list"):
            await client.video_details("7117191641181555995")  # type: ignore[arg-type]
    assert request_count(mock_api) == 0


async def test_twenty_digit_and_int_ids_are_accepted(mock_api: aioresponses.aioresponses) -> None:
    echo = Echo()
    mock_api.get(DETAIL_URL, callback=echo, repeat=True)
    async with make_client() as client:
        videos = await client.video_details([99999999999999999999, "7117191641181555995"])
    assert echo.seen == [["99999999999999999999", "7117191641181555995"]]
    assert {v.video_id for v in videos} == {"99999999999999999999", "7117191641181555995"}


async def test_lazy_source_is_pulled_only_as_batches_are_needed(
    mock_api: aioresponses.aioresponses,
) -> None:
    mock_api.get(DETAIL_URL, callback=Echo(), repeat=True)
    pulled = 0

    async def million() -> Any:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield str(7_000_000_000_000_000_000 + i)

    async with make_client(max_concurrency=3) as client:
        got = 0
        async with __import__("contextlib").aclosing(client.iter_video_details(million())) as it:
            async for _ in it:
                got += 1
                if got == 15:
                    break
    # At most the batches in flight (3) plus the one being assembled were ever pulled.
    assert 15 <= pulled <= (3 + 2) * 10


async def test_iteration_keeps_at_most_max_concurrency_batches_in_flight(
    mock_api: aioresponses.aioresponses,
) -> None:
    in_flight = peak = 0
    release = asyncio.Event()

    async def slow(url: Any, **kwargs: Any) -> CallbackResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if peak >= 4:
            release.set()
        await release.wait()
        in_flight -= 1
        return Echo()(url, **kwargs)

    mock_api.get(DETAIL_URL, callback=slow, repeat=True)
    async with make_client(max_concurrency=4) as client:
        ids = [str(10**18 + i) for i in range(200)]
        videos = await client.video_details(ids)
    assert len(videos) == 200
    assert peak == 4


# -- ranking -------------------------------------------------------------------------


RANK_ARGS: dict[str, Any] = {
    "date": "2026-11-16",
    "region": "US",
    "video_rank_field": 1,
    "rank_type": ka.RankType.WEEK,
}


@pytest.mark.parametrize(
    "override",
    [
        {"date": "2026-11-17"},  # weekly list keyed by a Tuesday
        {"date": "2026-11-16", "rank_type": 3},  # monthly list not keyed by the 1st
        {"date": "2026-13-01", "rank_type": 1},
        {"date": "16/11/2026"},
        {"date": 20261116},
        {"date": "2999-01-05"},
        {"region": ""},
        {"region": " US"},
        {"region": None},
        {"video_rank_field": 3},
        {"video_rank_field": True},
        {"rank_type": 0},
        {"rank_type": "2"},
        {"page_num": 0},
        {"page_num": 100_001},
        {"page_size": 11},
        {"page_size": 0},
        {"created_by_ai": "true"},
        {"product_category_id": "abc"},
        {"product_category_id": -1},
    ],
)
async def test_invalid_ranking_parameters_are_refused_before_sending(
    mock_api: aioresponses.aioresponses, override: dict[str, Any]
) -> None:
    async with make_client() as client:
        with pytest.raises(ka.InvalidParameterError):
            await client.video_ranking(**{**RANK_ARGS, **override})
        with pytest.raises(ka.InvalidParameterError):
            pages = {k: v for k, v in {**RANK_ARGS, **override}.items() if k != "page_num"}
            if "page_num" in override:
                pages["start_page"] = override["page_num"]
            async for _ in client.iter_video_ranking(**pages):
                pass
    assert request_count(mock_api) == 0


async def test_ranking_parameters_go_out_as_the_api_expects(
    mock_api: aioresponses.aioresponses,
) -> None:
    seen: dict[str, str] = {}

    def capture(url: Any, **kwargs: Any) -> CallbackResult:
        seen.update(kwargs["params"])
        return CallbackResult(
            status=200,
            body=envelope([{"video_id": "1", "video_products": "[]", "product_category_list": ""}]),
        )

    mock_api.get(RANKING_URL, callback=capture)
    import datetime as dt

    async with make_client() as client:
        page = await client.video_ranking(
            date=dt.date(2026, 11, 1),
            region="US",
            video_rank_field=ka.VideoRankField.SALES,
            rank_type=3,
            page_num=7,
            page_size=5,
            product_category_id=601450,
            created_by_ai=False,
        )
    assert seen == {
        "date": "2026-11-01",
        "region": "US",
        "video_rank_field": "2",
        "rank_type": "3",
        "page_num": "7",
        "page_size": "5",
        "product_category_id": "601450",
        "created_by_ai": "false",
    }
    assert page[0].video_products == [] and page[0].product_category_list == []


# -- errors and retries --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, 400, ka.BadRequestError),
        (401, 401, ka.AuthenticationError),
        (402, 402, ka.QuotaExceededError),
        (200, 400, ka.BadRequestError),
        (200, 401, ka.AuthenticationError),
        (200, 402, ka.QuotaExceededError),
    ],
)
async def test_errors_that_are_never_retried(
    mock_api: aioresponses.aioresponses, status: int, code: int, error: type[ka.KeyAPIError]
) -> None:
    mock_api.get(DETAIL_URL, status=status, body=envelope(None, code, "nope", "rid-9"), repeat=True)
    async with make_client() as client:
        with pytest.raises(error) as info:
            await client.video_details(["1"])
    assert (info.value.status, info.value.code, info.value.request_id) == (status, code, "rid-9")
    assert request_count(mock_api) == 1
    assert "nope" in str(info.value) and "rid-9" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, envelope(None, 500, "Internal server error"), ka.ServerError),
        (200, envelope(None, 500, "Internal server error"), ka.ServerError),
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", ka.ServerError),
        (503, b"", ka.ServerError),
        (200, b'{"code":0,"message":"success","data":[{"video_id":"1","cre', ka.DecodeError),
    ],
)
async def test_retryable_errors_are_retried_up_to_max_retries(
    mock_api: aioresponses.aioresponses, status: int, body: bytes, error: type[ka.KeyAPIError]
) -> None:
    mock_api.get(DETAIL_URL, status=status, body=body, repeat=True)
    async with make_client(max_retries=2) as client:
        with pytest.raises(error) as info:
            await client.video_details(["1"])
    assert request_count(mock_api) == 3
    assert info.value.status == status
    assert client.stats.retries == 2


async def test_a_failure_followed_by_success_returns_the_data(
    mock_api: aioresponses.aioresponses,
) -> None:
    mock_api.get(DETAIL_URL, status=500, body=envelope(None, 500, "x"))
    mock_api.get(DETAIL_URL, status=200, body=envelope(None, 429, "qps limit exceeded"))
    mock_api.get(DETAIL_URL, exception=__import__("aiohttp").ServerDisconnectedError())
    mock_api.get(DETAIL_URL, callback=Echo())
    async with make_client() as client:
        videos = await client.video_details(["7117191641181555995"])
    assert [v.video_id for v in videos] == ["7117191641181555995"]
    assert request_count(mock_api) == 4
    assert client.stats.rate_limited == 1


async def test_connection_failure_and_timeout_become_api_connection_error(
    mock_api: aioresponses.aioresponses,
) -> None:
    mock_api.get(DETAIL_URL, exception=asyncio.TimeoutError(), repeat=True)
    async with make_client(max_retries=1) as client:
        with pytest.raises(ka.APIConnectionError, match="no complete answer"):
            await client.video_details(["1"])
    assert request_count(mock_api) == 2


class SpyLimiter:
    """Records what the client asks of its rate limiter."""

    def __init__(self) -> None:
        self.acquired = 0
        self.penalties: list[float] = []
        self.throttled: list[float] = []

    @property
    def qps(self) -> float:
        return 1000.0

    async def acquire(self) -> None:
        self.acquired += 1

    async def penalize(self, seconds: float) -> None:
        self.penalties.append(seconds)

    async def on_throttle(self, started_at: float) -> None:
        self.throttled.append(started_at)


@pytest.mark.parametrize("status", [429, 200])  # HTTP 429, or a 429 code in an HTTP 200 body
async def test_a_429_without_retry_after_is_a_congestion_signal_not_a_retry(
    mock_api: aioresponses.aioresponses, status: int
) -> None:
    for _ in range(6):  # more 429s than max_retries allows retries
        mock_api.get(DETAIL_URL, status=status, body=envelope(None, 429, "qps limit exceeded"))
    mock_api.get(DETAIL_URL, callback=Echo())
    spy = SpyLimiter()
    async with make_client(rate_limiter=spy, max_retries=1) as client:
        videos = await client.video_details(["7117191641181555995"])
    assert [v.video_id for v in videos] == ["7117191641181555995"]
    assert request_count(mock_api) == 7
    assert spy.acquired == 7  # each try took a fresh permit
    assert len(spy.throttled) == 6  # the limiter heard of each 429, with its start time
    assert spy.throttled == sorted(spy.throttled)
    assert spy.penalties == []  # nobody was paused: the rate adapts instead
    assert (client.stats.retries, client.stats.rate_limited) == (0, 6)


async def test_a_limiter_without_on_throttle_still_works(
    mock_api: aioresponses.aioresponses,
) -> None:
    class Minimal:
        qps = 1000.0

        async def acquire(self) -> None:
            pass

        async def penalize(self, seconds: float) -> None:
            pass

    mock_api.get(DETAIL_URL, status=429, body=envelope(None, 429, "qps limit exceeded"))
    mock_api.get(DETAIL_URL, callback=Echo())
    async with make_client(rate_limiter=Minimal()) as client:
        assert len(await client.video_details(["1"])) == 1
    assert client.stats.rate_limited == 1


async def test_429s_without_success_end_the_call_after_the_patience(
    mock_api: aioresponses.aioresponses,
) -> None:
    mock_api.get(
        DETAIL_URL, status=429, body=envelope(None, 429, "qps limit exceeded", "rid-7"),
        repeat=True,
    )
    async with make_client(rate_limit_patience=0.2) as client:
        with pytest.raises(ka.RateLimitError) as info:
            await client.video_details(["1"])
    error = info.value
    assert error.fatal and not error.retryable
    assert "rate_limit_patience=0.2" in str(error) and error.request_id == "rid-7"
    assert error.status == 429 and error.retry_after is None
    assert request_count(mock_api) >= 2  # it did keep trying, paced
    assert client.stats.retries == 0
    assert client.stats.learned_qps is not None and client.qps < 1000  # it slowed down


async def test_a_success_resets_the_patience(mock_api: aioresponses.aioresponses) -> None:
    limited = envelope(None, 429, "qps limit exceeded")
    spy = SpyLimiter()
    async with make_client(rate_limiter=spy, rate_limit_patience=0) as client:
        # Patience 0: the first 429 after a success, or ever, gives up at once.
        mock_api.get(DETAIL_URL, status=429, body=limited)
        with pytest.raises(ka.RateLimitError):
            await client.video_details(["1"])
        # The streak is over once it gave up: the next call gets its full patience.
        mock_api.get(DETAIL_URL, callback=Echo())
        assert len(await client.video_details(["2"])) == 1
    assert len(spy.throttled) == 1


async def test_retry_after_is_honoured_exactly_and_slows_the_whole_client(
    mock_api: aioresponses.aioresponses,
) -> None:
    mock_api.get(
        DETAIL_URL,
        status=429,
        body=envelope(None, 429, "qps limit exceeded"),
        headers={"Retry-After": "0.05"},
    )
    mock_api.get(DETAIL_URL, callback=Echo())
    spy = SpyLimiter()
    async with make_client(rate_limiter=spy) as client:
        await client.video_details(["1"])
    assert spy.penalties == [0.05]  # exact: no jitter on a server-given wait
    assert spy.acquired == 2  # the retry asked the limiter again


async def test_too_long_retry_after_raises_at_once_with_retry_after(
    mock_api: aioresponses.aioresponses,
) -> None:
    mock_api.get(
        DETAIL_URL,
        status=429,
        body=envelope(None, 429, "qps limit exceeded"),
        headers={"Retry-After": "3600"},
        repeat=True,
    )
    async with make_client() as client:
        with pytest.raises(ka.RateLimitError) as info:
            await client.video_details(["1"])
    assert info.value.retry_after == 3600
    assert request_count(mock_api) == 1


async def test_fatal_error_stops_a_multi_batch_call(mock_api: aioresponses.aioresponses) -> None:
    mock_api.get(DETAIL_URL, callback=Echo())
    mock_api.get(
        DETAIL_URL, status=402, body=envelope(None, 402, "apiKey quota is not enough"), repeat=True
    )
    ids = [str(10**18 + i) for i in range(50)]
    async with make_client(max_concurrency=1) as client:
        batches: list[ka.DetailBatch] = []
        with pytest.raises(ka.QuotaExceededError):
            async for batch in client.iter_detail_batches(ids):
                batches.append(batch)
    assert request_count(mock_api) == 2  # one success, one 402, then nothing
    assert [b.error is None for b in batches] == [True, False]
    assert isinstance(batches[1].error, ka.QuotaExceededError)


async def test_batch_failures_are_yielded_and_the_call_goes_on(
    mock_api: aioresponses.aioresponses,
) -> None:
    mock_api.get(DETAIL_URL, status=500, body=envelope(None, 500, "x"))
    mock_api.get(DETAIL_URL, callback=Echo(), repeat=True)
    ids = [str(10**18 + i) for i in range(30)]
    async with make_client(max_concurrency=1, max_retries=0) as client:
        batches = [b async for b in client.iter_detail_batches(ids)]
    assert [type(b.error) for b in batches] == [ka.ServerError, type(None), type(None)]
    assert sorted(i for b in batches for i in b.ids) == sorted(ids)
    assert batches[0].attempts == 1


# -- decoding ------------------------------------------------------------------------


async def test_records_are_normalized(mock_api: aioresponses.aioresponses) -> None:
    body = envelope([record("7117191641181555995", video_desc="bulan \U0001f389")])
    body = body.replace(b"bulan", b"bu\x01l\nan\t")  # raw control characters
    mock_api.get(DETAIL_URL, body=body)
    async with make_client() as client:
        (video,) = await client.video_details(["7117191641181555995"])
    assert video.video_desc == "bu\x01l\nan\t \U0001f389"
    assert video.create_time is not None and video.create_time.tzinfo is not None
    assert video.create_time.timestamp() == 1657100315
    assert (video.height, video.width, video.data_size) == (1024, 576, 1049064)
    assert video.created_by_ai is False
    assert video.total_favorites_cnt is None  # -99999
    assert video.total_views_cnt == 211100
    assert video.region is None  # ""


# -- security and lifecycle ----------------------------------------------------------


async def test_the_key_never_leaks(
    mock_api: aioresponses.aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mock_api.get(DETAIL_URL, exception=__import__("aiohttp").ClientConnectionError("refused"))
    mock_api.get(DETAIL_URL, status=401, body=envelope(None, 401, "apiKey is invalid"))
    client = make_client(max_retries=3)
    async with client:
        with pytest.raises(ka.AuthenticationError) as info:
            await client.video_details(["1"])
    text = "\n".join(
        [
            repr(client),
            str(client),
            repr(info.value),
            str(info.value),
            caplog.text,
            "".join(traceback.format_exception(info.value)),
            repr(vars(client)),
            repr(client._transport.__dict__),
        ]
    )
    assert API_KEY not in text
    assert "***" in repr(client)
    with pytest.raises(TypeError):
        __import__("pickle").dumps(client._transport._api_key)


async def test_the_key_is_sent_as_a_bearer_token(mock_api: aioresponses.aioresponses) -> None:
    # aioresponses replaces the session's request; check the headers it was called with.
    mock_api.get(DETAIL_URL, callback=Echo())
    async with make_client() as client:
        await client.video_details(["1"])
        session = client._transport._session
        assert session is not None and "Authorization" not in session.headers  # see Transport
    (call,) = [c for calls in mock_api.requests.values() for c in calls]
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {API_KEY}"


async def test_a_closed_client_refuses_work(mock_api: aioresponses.aioresponses) -> None:
    client = make_client()
    await client.aclose()
    with pytest.raises(ka.ConfigurationError, match="closed"):
        await client.video_details(["1"])
    assert request_count(mock_api) == 0


async def test_an_unclosed_client_warns_when_collected(mock_api: aioresponses.aioresponses) -> None:
    mock_api.get(DETAIL_URL, callback=Echo())
    client = make_client()
    await client.video_details(["1"])
    session = client._transport._session
    with pytest.warns(ResourceWarning, match="unclosed KeyAPIClient"):
        del client
        gc.collect()
    assert session is not None
    await session.close()


async def test_the_retry_policy_count_applies_unless_max_retries_is_given(
    mock_api: aioresponses.aioresponses,
) -> None:
    mock_api.get(DETAIL_URL, status=500, body=envelope(None, 500, "x"), repeat=True)
    policy = ka.RetryPolicy(max_retries=1, base_delay=0.001)
    async with ka.KeyAPIClient(API_KEY, base_url="https://api.test", retry_policy=policy) as c:
        with pytest.raises(ka.ServerError):
            await c.video_details(["1"])
    assert request_count(mock_api) == 2
    async with ka.KeyAPIClient(
        API_KEY, base_url="https://api.test", retry_policy=policy, max_retries=0
    ) as c:
        with pytest.raises(ka.ServerError):
            await c.video_details(["1"])
    assert request_count(mock_api) == 3


def test_a_new_event_loop_keeps_the_adaptive_rate() -> None:
    # Successive asyncio.run calls rebuild the default limiter for the new loop: its
    # schedule is new, its mode, ceiling and learned rate are not.
    client = make_client(qps="auto", max_qps=80)

    async def throttle() -> None:
        client._bind_loop()
        await client._limiter.on_throttle(asyncio.get_running_loop().time())

    async def rebind() -> None:
        client._bind_loop()

    asyncio.run(throttle())
    learned, rate = client._limiter.learned_qps, client.qps
    asyncio.run(rebind())
    limiter = client._limiter
    assert isinstance(limiter, ka.LocalRateLimiter) and limiter.auto and limiter.max_qps == 80
    assert limiter.learned_qps == learned == 5 and client.qps >= rate
    assert client._on_throttle == limiter.on_throttle
