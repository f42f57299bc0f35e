"""decode_response: normalization, both wire forms, and typed errors only."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keyapi_async as ka
from keyapi_async.pipeline.decoding import (
    DETAIL_DECODER,
    RANKING_DECODER,
    decode_response,
    escape_control_chars,
)

RANKED = {
    "avatar": "https://a/b.jpg",
    "category": "Other",
    "create_time": "1769838405",
    "created_by_ai": "true",
    "duration": 15,
    "nick_name": "ﾌひﾚﾉの",
    "product_category_list": '[{ "category_name":"Beauty & Personal Care","category_id":"601450"}]',
    "region": "US",
    "sales_flag": 1,
    "total_comments_cnt": 0,
    "total_digg_cnt": -99999,
    "total_favorites_cnt": 0,
    "total_shares_cnt": 0,
    "total_video_sale_cnt": 5508,
    "total_video_sale_gmv_amt": 44613,
    "total_views_cnt": 0,
    "unique_id": "iamjuliocr",
    "user_id": "6633792625097490438",
    "video_desc": "W huzz magnet 🧲 #fyp",
    "video_id": "7601397977986501919",
    "video_products": "[1729436418527695003, 99999999999999999999]",
}


def body(data: object, code: int = 0) -> bytes:
    return msgspec.json.encode({"code": code, "message": "success", "data": data, "requestId": "r"})


def test_ranked_video_from_the_documented_string_form() -> None:
    decoded = decode_response(RANKING_DECODER, 200, body([RANKED]))
    (item,) = decoded.records
    assert decoded.request_id == "r" and not decoded.failed
    assert item.product_category_list == [
        ka.ProductCategory(category_id="601450", category_name="Beauty & Personal Care")
    ]
    # Bare 19/20-digit numbers inside the string stay exact, as strings.
    assert item.video_products == ["1729436418527695003", "99999999999999999999"]
    assert item.total_digg_cnt is None and item.total_video_sale_cnt == 5508
    assert item.created_by_ai is True and item.nick_name == "ﾌひﾚﾉの"


def test_ranked_video_from_real_arrays() -> None:
    raw = dict(
        RANKED,
        product_category_list=[{"category_id": 601450, "category_name": "B"}],
        video_products=[1729436418527695003, "42"],
    )
    (item,) = decode_response(RANKING_DECODER, 200, body([raw])).records
    assert item.product_category_list == [ka.ProductCategory("601450", "B")]
    assert item.video_products == ["1729436418527695003", "42"]


@pytest.mark.parametrize("value", ["", "[]", None])
def test_empty_json_in_string_fields(value: object) -> None:
    raw = dict(RANKED, product_category_list=value, video_products=value)
    (item,) = decode_response(RANKING_DECODER, 200, body([raw])).records
    expected = None if value is None else []
    assert item.product_category_list == expected and item.video_products == expected


def test_malformed_json_in_string_is_read_as_none_not_an_error() -> None:
    # A complete, paid answer: the bad value costs the field, not the batch.
    decoded = decode_response(RANKING_DECODER, 200, body([dict(RANKED, video_products="[1,")]))
    (item,) = decoded.records
    assert item.video_products is None and item.video_id == RANKED["video_id"]


def test_missing_fields_are_none_and_extra_fields_ignored() -> None:
    (video,) = decode_response(
        DETAIL_DECODER, 200, body([{"video_id": "5", "new_field": 1}])
    ).records
    assert video.video_id == "5" and video.total_views_cnt is None and video.create_time is None


def test_code_zero_with_null_data_is_an_empty_list() -> None:
    decoded = decode_response(DETAIL_DECODER, 200, body(None))
    assert (decoded.records, decoded.request_id, decoded.failed) == ([], "r", ())


def test_control_characters_are_escaped_only_inside_strings() -> None:
    raw = b'{\n\t"a": "x\x01y\nz",\r\n "b": 1}'
    assert msgspec.json.decode(escape_control_chars(raw)) == {"a": "x\x01y\nz", "b": 1}


@pytest.mark.parametrize(
    ("status", "raw", "error", "code"),
    [
        (
            200,
            b'{"code":429,"message":"qps limit exceeded","data":null,"requestId":"q"}',
            ka.RateLimitError,
            429,
        ),
        (
            500,
            b'{"code":500,"message":"Internal server error","data":{"x":1}}',
            ka.ServerError,
            500,
        ),
        (502, b"<html>Bad Gateway</html>", ka.ServerError, 502),
        (404, b"not found", ka.EndpointNotFoundError, 404),
        (200, b"", ka.DecodeError, None),
        (200, b"[]", ka.DecodeError, None),
        (200, b'{"code":0,"data":"tall","requestId":"q"}', ka.MalformedAnswerError, None),
    ],
)
def test_error_bodies(
    status: int, raw: bytes, error: type[ka.KeyAPIError], code: int | None
) -> None:
    with pytest.raises(error) as info:
        decode_response(DETAIL_DECODER, status, raw)
    assert type(info.value) is error
    assert info.value.status == status and info.value.code == code


def test_decode_error_carries_the_request_id_it_could_find() -> None:
    with pytest.raises(ka.DecodeError) as info:
        decode_response(DETAIL_DECODER, 200, b'{"code":0,"requestId":"abc-1","data":[{"vid')
    assert info.value.request_id == "abc-1"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        _json.map(msgspec.json.encode),
        st.builds(
            lambda d, cut: body(d)[:cut],
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "video_id": st.text(),
                        "height": st.one_of(st.text(), st.integers()),
                        "create_time": st.one_of(
                            st.text(), st.integers(min_value=-(10**20), max_value=10**20)
                        ),
                        "video_products": st.one_of(st.text(), st.lists(st.integers())),
                        "product_category_list": st.one_of(st.text(), _json),
                    },
                ),
                max_size=3,
            ),
            st.integers(min_value=0, max_value=400),
        ),
    )
)
def test_only_typed_errors_escape(raw: bytes) -> None:
    for decoder in (DETAIL_DECODER, RANKING_DECODER):
        for status in (200, 500):
            with contextlib.suppress(ka.KeyAPIError):
                decode_response(decoder, status, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"code":0,"message":"\x80bad utf-8","data":[' + b"\x80",
        b'{"code":0,"data":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
    ids=["invalid-utf8", "deep-nesting"],
)
def test_non_msgspec_failures_become_decode_errors(raw: bytes) -> None:
    # Found by the property tests: msgspec raises UnicodeDecodeError and RecursionError here.
    with pytest.raises(ka.DecodeError):
        decode_response(DETAIL_DECODER, 200, raw)


def test_invalid_utf8_in_a_complete_answer_is_replaced_not_retried() -> None:
    raw = b'{"code":0,"message":"\x80","data":[{"video_id":"5","video_desc":"a\xffb"}]}'
    (video,) = decode_response(DETAIL_DECODER, 200, raw).records
    assert video.video_id == "5" and video.video_desc == "a\ufffdb"
