"""Property-based tests: whatever the input, the SDK refuses it cleanly or handles it exactly."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keyapi_async as ka
from keyapi_async.pipeline.batching import id_batches, unique_ids
from keyapi_async.pipeline.decoding import DETAIL_DECODER, RANKING_DECODER, decode_response
from keyapi_async.pipeline.validation import ranking_query, video_id

pytestmark = pytest.mark.reliability

valid_ids = st.one_of(
    st.integers(min_value=1, max_value=10**20 - 1),
    st.from_regex(r"[0-9]{1,20}", fullmatch=True).filter(lambda s: s.strip("0") != ""),
)
invalid_ids = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),
    st.integers(max_value=0),
    st.integers(min_value=10**20),
    st.text().filter(lambda s: not (s.isascii() and s.isdigit())),
    st.from_regex(r"0{1,20}", fullmatch=True),
    st.from_regex(r"[0-9]{21,25}", fullmatch=True),
    st.binary(max_size=5),
    st.from_regex(r" [0-9]{3}|[0-9]{3} |[0-9]+,[0-9]+|[+-][0-9]+", fullmatch=True),
)


def collect(source: Any) -> list[list[str]]:
    async def run() -> list[list[str]]:
        return [b async for b in id_batches(source)]

    return asyncio.run(run())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(valid_ids, invalid_ids), max_size=60), st.booleans())
def test_ids_are_refused_or_batched_exactly(ids: list[Any], lazy: bool) -> None:
    source = iter(ids) if lazy else ids
    is_valid = [
        (isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10**20)
        or (
            isinstance(v, str)
            and v.isascii()
            and v.isdigit()
            and len(v) <= 20
            and v.strip("0") != ""
        )
        for v in ids
    ]
    if not all(is_valid):
        with pytest.raises(ka.InvalidParameterError):
            collect(source)
        return
    batches = collect(source)
    assert all(1 <= len(b) <= 10 for b in batches)
    flat = [i for b in batches for i in b]
    unique = list(dict.fromkeys(str(v) for v in ids))
    assert flat == unique  # each unique id once, in first-seen order
    assert all(len(b) == 10 for b in batches[:-1])  # only the last batch may be short


string_ids = st.one_of(
    st.from_regex(r"[0-9]{1,20}", fullmatch=True).filter(lambda s: s.strip("0") != ""),
    st.from_regex(r"0{1,3}|[0-9]{19,22}|[0-9]{1,3}[,\n ][0-9]{0,3}|,|", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(string_ids, max_size=40), st.booleans())
def test_unique_ids_of_strings_agree_with_validating_each_id(
    ids: list[str], as_tuple: bool
) -> None:
    """The strings' fast path (one expression over the ids joined) refuses exactly what
    validating id by id refuses, with the same message, and keeps the same ids."""
    source = tuple(ids) if as_tuple else ids

    def one_by_one() -> list[str]:
        return list(dict.fromkeys(video_id(v, i) for i, v in enumerate(ids)))

    try:
        expected: Any = one_by_one()
    except ka.InvalidParameterError as exc:
        with pytest.raises(ka.InvalidParameterError) as got:
            unique_ids(source)
        assert str(got.value) == str(exc)
    else:
        assert unique_ids(source) == expected


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(valid_ids, invalid_ids), min_size=1, max_size=30))
def test_no_request_is_sent_for_an_invalid_id_list(mock_api: Any, ids: list[Any]) -> None:
    from conftest import make_client

    def sent() -> int:  # the mock's log spans every example of this test
        return sum(len(c) for c in mock_api.requests.values())

    async def run() -> None:
        before = sent()
        async with make_client() as client:
            try:
                await client.video_details(ids)
            except ka.InvalidParameterError:
                assert sent() == before
            except ka.KeyAPIError:
                pass  # valid ids hit the unmocked URL: a connection error, fine here

    asyncio.run(run())


TODAY = dt.date(2026, 11, 21)


@settings(max_examples=400, deadline=None)
@given(
    date=st.one_of(
        st.dates(dt.date(2020, 1, 1), dt.date(2027, 12, 31)),
        st.dates(dt.date(2020, 1, 1), dt.date(2027, 12, 31)).map(str),
        st.text(max_size=12),
        st.integers(),
        st.none(),
    ),
    region=st.one_of(
        st.sampled_from(["US", "GB", "DE", "", " US", "US "]), st.none(), st.integers()
    ),
    field=st.one_of(
        st.integers(-1, 4),
        st.sampled_from(list(ka.VideoRankField)),
        st.text(max_size=2),
        st.booleans(),
    ),
    rank=st.one_of(st.integers(-1, 4), st.sampled_from(list(ka.RankType)), st.booleans()),
    category=st.one_of(
        st.none(), st.integers(-5, 10**7), st.from_regex(r"[0-9a-z]{0,7}", fullmatch=True)
    ),
    ai=st.one_of(st.none(), st.booleans(), st.sampled_from(["true", "false", 1, 0])),
)
def test_every_invalid_ranking_combination_is_refused(
    date: Any, region: Any, field: Any, rank: Any, category: Any, ai: Any
) -> None:
    # An independent oracle of the rules, written from the spec rather than the code.
    parsed: dt.date | None = None
    if isinstance(date, dt.date):
        parsed = date
    elif isinstance(date, str) and len(date) == 10:
        try:
            parsed = dt.date.fromisoformat(date)
        except ValueError:
            parsed = None
    ok_field = isinstance(field, int) and not isinstance(field, bool) and field in (1, 2)
    ok_rank = isinstance(rank, int) and not isinstance(rank, bool) and rank in (1, 2, 3)
    valid = (
        parsed is not None
        and ok_field
        and ok_rank
        and parsed <= TODAY
        and (rank != 2 or parsed.weekday() == 0)
        and (rank != 3 or parsed.day == 1)
        and isinstance(region, str)
        and region.strip() == region != ""
        and (category is None or (not isinstance(category, bool) and str(category).isdigit()))
        and (ai is None or isinstance(ai, bool))
    )
    kwargs = {
        "date": date,
        "region": region,
        "video_rank_field": field,
        "rank_type": rank,
        "product_category_id": category,
        "created_by_ai": ai,
        "today": TODAY,
    }
    if valid:
        query = ranking_query(**kwargs)
        params = query.params(1, 10)
        assert params["date"] == parsed.isoformat() if parsed else False
        assert params["video_rank_field"] == str(int(field))
    else:
        with pytest.raises(ka.InvalidParameterError):
            ranking_query(**kwargs)


GOOD_RECORD = {
    "video_id": "7117191641181555995",
    "create_time": "1657100315",
    "height": "1024",
    "created_by_ai": "false",
    "total_views_cnt": 5,
    "video_desc": "héllo 🎉",
    "video_products": "[1729436418527695003]",
    "product_category_list": '[{"category_id":"1","category_name":"x"}]',
}
GOOD_BODY = msgspec.json.encode(
    {"code": 0, "message": "success", "data": [GOOD_RECORD] * 3, "requestId": "r"}
)


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """A valid body, damaged one way: truncated, flipped, padded, nested, huge, control, retyped."""
    good = GOOD_BODY
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "nest", "huge", "ctrl", "type"]))
    if kind == "truncate":
        return good[: draw(st.integers(0, len(good)))]
    if kind == "flip":
        i = draw(st.integers(0, len(good) - 1))
        return good[:i] + bytes([draw(st.integers(0, 255))]) + good[i + 1 :]
    if kind == "insert":
        i = draw(st.integers(0, len(good)))
        return good[:i] + draw(st.binary(min_size=1, max_size=8)) + good[i:]
    if kind == "nest":
        depth = draw(st.integers(1, 3000))
        return good.replace(b'"data":', b'"data":' + b"[" * depth, 1) + b"]" * depth
    if kind == "huge":
        digits = b"9" * draw(st.integers(18, 400))
        return good.replace(b'"total_views_cnt":5', b'"total_views_cnt":' + digits)
    if kind == "ctrl":
        return good.replace("héllo".encode(), bytes([draw(st.integers(0, 31))]) + b"x")
    field = draw(st.sampled_from([b'"height":"1024"', b'"created_by_ai":"false"', b'"code":0']))
    value = draw(st.sampled_from([b"[]", b"{}", b'"abc"', b"1e999", b"-1", b"null", b"true"]))
    return good.replace(field, field.split(b":")[0] + b":" + value)


@settings(max_examples=500, deadline=None)
@given(mutated_bodies(), st.sampled_from([200, 429, 500, 502]))
def test_decoders_let_only_typed_errors_escape(raw: bytes, status: int) -> None:
    for decoder in (DETAIL_DECODER, RANKING_DECODER):
        try:
            records = decode_response(decoder, status, raw).records
        except ka.KeyAPIError as exc:
            assert exc.status == status
        else:
            assert status == 200 and isinstance(records, list)
