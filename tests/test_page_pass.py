"""The page pass (models.finish_ranking / finish_details) keeps the documented rules.

docs/data-model.md: JSON in a string or a real array -> a list ("" -> []), product ids stay
exact strings, category ids are text, -99999 -> None (counts and create_time), "" region ->
None; a nested text the
rules cannot read is read leniently (salvage) without costing the other records. The page
pass reads whole pages at once (the ids of all texts split out together), so these tests
pin it against an oracle written from the spec alone, and a page against its records
decoded one by one.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keyapi_async as ka
from keyapi_async.pipeline import models
from keyapi_async.pipeline.decoding import (
    DETAIL_DECODER,
    RANKING_DECODER,
    RepairLog,
    decode_response,
)

UNKNOWN = -99999
INT_FIELDS = ("duration", "sales_flag", "total_views_cnt", "total_digg_cnt",
              "total_comments_cnt", "total_shares_cnt", "total_favorites_cnt",
              "total_video_sale_cnt", "total_video_sale_gmv_amt")


def body(records: list[Any]) -> bytes:
    return msgspec.json.encode({"code": 0, "message": "success", "data": records,
                                "requestId": "rid"})


def builtins(records: list[Any]) -> Any:
    return msgspec.to_builtins(records)


# -- pages of the documented forms ------------------------------------------------------

_id = st.one_of(
    st.integers(min_value=0, max_value=10**25),  # beyond 2**64 too: kept exact
    st.integers(min_value=0, max_value=10**20).map(str),
)
_category = st.fixed_dictionaries({
    "category_id": st.one_of(st.integers(0, 10**9), st.text(max_size=8)),
    "category_name": st.text(max_size=12),
})
_spacing = st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :")])
_around = st.sampled_from(["", " ", "\n", " \t", "\r\n"])


def _text(items: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[str]:
    """JSON text of a list, spaced as the upstream might, with blanks around or not."""
    return st.builds(
        lambda value, sep, before, after: before + json.dumps(value, separators=sep) + after,
        items, _spacing, _around, _around,
    )


def _nested(items: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[Any]:
    # Every documented form: JSON in a string, a real array, "", "[]", blanks, null.
    return st.one_of(
        _text(items), items, st.sampled_from(["", "[]", "  ", None]),
    )


_categories = st.lists(_category, max_size=3)
_ids = st.lists(_id, max_size=3)
# The common form, bare ids in brackets: weighted in so the split path is taken often.
_common_ids = st.lists(st.integers(0, 10**20), max_size=3).map(
    lambda ids: "[" + ",".join(map(str, ids)) + "]"
)


@st.composite
def ranked_records(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {"video_id": str(draw(st.integers(10**18, 10**19)))}
    for name in INT_FIELDS:
        if draw(st.booleans()):
            record[name] = draw(st.sampled_from([UNKNOWN, str(UNKNOWN), 0, 7, "42"]))
    if draw(st.booleans()):
        record["region"] = draw(st.sampled_from(["", "US", None]))
    if draw(st.booleans()):
        record["create_time"] = draw(st.sampled_from(
            [UNKNOWN, str(UNKNOWN), -99999.0, "1657100315", 1657100315, "0", None]
        ))
    if draw(st.integers(0, 9)):  # sometimes absent
        record["product_category_list"] = draw(_nested(_categories))
    if draw(st.integers(0, 9)):
        record["video_products"] = draw(st.one_of(_common_ids, _nested(_ids)))
    return record


def _expected_list(value: Any, item: Any) -> Any:
    """The spec's rule for a nested field, written independently of the SDK."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return []
        value = json.loads(value)
    return [item(v) for v in value]


def _category_of(raw: dict[str, Any]) -> dict[str, Any]:
    cid = raw["category_id"]
    return {"category_id": cid if isinstance(cid, str) else str(cid),
            "category_name": raw["category_name"]}


def expected(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"video_id": record["video_id"]}
    for name in INT_FIELDS:
        if name in record:
            value = int(record[name])
            out[name] = None if value == UNKNOWN else value
    if "region" in record:
        out["region"] = record["region"] or None
    seconds = record.get("create_time")
    out["create_time"] = (
        None if seconds is None or float(seconds) == UNKNOWN
        else datetime.fromtimestamp(float(seconds), timezone.utc)
    )
    out["product_category_list"] = _expected_list(
        record.get("product_category_list"), _category_of
    )
    out["video_products"] = _expected_list(record.get("video_products"), str)
    return out


def _as_dict(record: ka.RankedVideo) -> dict[str, Any]:
    got: dict[str, Any] = msgspec.to_builtins(record)
    return {k: v for k, v in got.items() if v is not None or k in ("region", *INT_FIELDS)}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ranked_records(), max_size=12))
def test_every_documented_form_gives_the_lists_the_spec_says(records: list[dict[str, Any]]) -> None:
    repairs = RepairLog()
    decoded = decode_response(RANKING_DECODER, 200, body(records), repairs=repairs)
    assert decoded.failed == () and repairs.counts == {}  # nothing here is unusual
    assert len(decoded.records) == len(records)
    for record, got in zip(records, decoded.records, strict=True):
        want = expected(record)
        have = _as_dict(got)
        assert got.create_time == want.pop("create_time"), record
        for name, value in want.items():
            assert have.get(name) == value, (name, record)
        # Ids are text, never numbers (they exceed 2**53).
        assert all(isinstance(i, str) for i in got.video_products or [])
        assert all(isinstance(c.category_id, str) for c in got.product_category_list or [])


# -- any text at all: a page reads as its records one by one -----------------------------

_fragment = st.sampled_from([
    "[", "]", ",", "1", "0", "01", "-3", "1.5", "1e3", " ", "\n", '"', "{", "}", ":",
    '"category_id"', '"category_name"', '"x"', "null", "true", "[]", "{}", "é",
    "1729436418527695003", "99999999999999999999",
])
_any_text = st.one_of(
    st.lists(_fragment, max_size=8).map("".join),
    _text(_ids), _text(_categories), st.text(max_size=6),
)
# Neighbours that parse as valid lists only when joined: the shift the page pass must see.
_shifting_pairs = st.sampled_from([
    ("[1],[2", "3]"), ('["a],[b"]', "[1],[2]"), ("[[1]", "[2]]"), ('[1,"', '"]'),
    ("[]],[[", "[]"), ('[{"category_id":"1"}],[', '{"category_id":"2"}]'),
])


@st.composite
def any_pages(draw: st.DrawFn) -> list[dict[str, Any]]:
    records = [
        {"video_id": str(n), "product_category_list": draw(_any_text),
         "video_products": draw(_any_text)}
        for n in range(draw(st.integers(0, 8)))
    ]
    if len(records) >= 2 and draw(st.booleans()):
        first, second = draw(_shifting_pairs)
        name = draw(st.sampled_from(["product_category_list", "video_products"]))
        at = draw(st.integers(0, len(records) - 2))
        records[at][name], records[at + 1][name] = first, second
    return records


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_pages())
def test_a_page_reads_as_its_records_one_by_one(records: list[dict[str, Any]]) -> None:
    logging.disable(logging.WARNING)  # the lenient reads warn; the counts are compared
    try:
        page_repairs = RepairLog()
        page = decode_response(RANKING_DECODER, 200, body(records), repairs=page_repairs)
        alone: list[Any] = []
        alone_repairs = RepairLog()
        for record in records:
            alone += decode_response(
                RANKING_DECODER, 200, body([record]), repairs=alone_repairs
            ).records
    finally:
        logging.disable(logging.NOTSET)
    assert builtins(page.records) == builtins(alone)
    assert page_repairs.counts == alone_repairs.counts


# -- the pieces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "texts",
    [["[1],[2", "3]"], ['["a],[b"]', "[1],[2]"], ["[[1]", "[2]]"], ["[1]", " [2]"], ["[1", "]"]],
)
def test_texts_that_only_parse_when_joined_are_not_joined(texts: list[str]) -> None:
    assert models._join_exactly(texts) is None


def test_texts_that_are_each_one_value_are_joined() -> None:
    texts = ["[1]", "", '[{"category_name":"é"}]', "[]"]
    joined = models._join_exactly(texts)
    assert joined is not None
    assert joined[0] == ["[1]", "[]", '[{"category_name":"é"}]', "[]"]
    assert json.loads(joined[1]) == [[1], [], [{"category_name": "é"}], []]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_any_text, _common_ids, _text(_ids)), max_size=8))
def test_ids_split_from_the_text_equal_the_rule_per_text(texts: list[str]) -> None:
    split = models._split_product_ids(texts)
    if split is None:
        return  # not the common form: read one text at a time, by the rule itself
    assert split == [models.finish_product_ids(t) for t in texts]


def test_the_common_form_of_ids_is_split() -> None:
    texts = ["[1729436418527695003]", "[1, 2]", "[]", "", "[99999999999999999999,0]"]
    assert models._split_product_ids(texts) == [
        ["1729436418527695003"], ["1", "2"], [], [], ["99999999999999999999", "0"]
    ]


@pytest.mark.parametrize("texts", [["[-1]"], ["[1.0]"], ['["1"]'], ["[[1]]"], ["1"], ["[1e3]"]])
def test_other_forms_of_ids_take_the_rule(texts: list[str]) -> None:
    assert models._split_product_ids(texts) is None


def test_a_refused_text_changes_no_record_and_finishing_twice_changes_nothing() -> None:
    page = [{"video_id": "1", "video_products": "[1]", "total_views_cnt": UNKNOWN},
            {"video_id": "2", "video_products": "[1,", "region": ""}]
    records = RANKING_DECODER.decode(body(page)).data
    before = builtins(records)
    with pytest.raises(ValueError, match="video_products"):
        models.finish_ranking(records)
    assert builtins(records) == before
    good = RANKING_DECODER.decode(body(page[:1])).data
    models.finish_ranking(good)
    once = builtins(good)
    models.finish_ranking(good)
    assert builtins(good) == once == [
        {"video_id": "1", "total_views_cnt": None, "video_products": ["1"],
         **{k: None for k in once[0] if k not in ("video_id", "total_views_cnt",
                                                   "video_products")}}
    ]


def test_detail_pages_clear_unknowns_and_empty_regions_only() -> None:
    page = [
        {"video_id": "1", "height": "-99999", "total_digg_30d_cnt": UNKNOWN, "region": ""},
        {"video_id": "2", "height": "1024", "total_views_cnt": 5, "region": "US",
         "video_desc": "-99999"},
    ]
    first, second = decode_response(DETAIL_DECODER, 200, body(page)).records
    assert (first.height, first.total_digg_30d_cnt, first.region) == (None, None, None)
    assert (second.height, second.total_views_cnt, second.region) == (1024, 5, "US")
    assert second.video_desc == "-99999"  # text is text


@pytest.mark.parametrize("seconds", [UNKNOWN, str(UNKNOWN), -99999.0, "-99999.0"])
def test_an_unknown_create_time_is_none_not_1969(seconds: Any) -> None:
    page = [{"video_id": "1", "create_time": seconds},
            {"video_id": "2", "create_time": "1657100315"}]
    for decoder in (DETAIL_DECODER, RANKING_DECODER):
        repairs = RepairLog()
        unknown, known = decode_response(decoder, 200, body(page), repairs=repairs).records
        assert unknown.create_time is None
        assert known.create_time == datetime(2022, 7, 6, 9, 38, 35, tzinfo=timezone.utc)
        assert repairs.counts == {}  # the upstream's marker, not an unusual value


@pytest.mark.parametrize("seconds", [UNKNOWN, str(UNKNOWN), " -99999 "])
def test_an_unknown_create_time_is_none_in_a_salvaged_record_too(seconds: Any) -> None:
    # "576px" makes the typed decode refuse the record: it is read field by field.
    page = [{"video_id": "1", "height": "576px", "create_time": seconds}]
    repairs = RepairLog()
    logging.disable(logging.WARNING)  # the lenient read warns; the counts are checked
    try:
        (record,) = decode_response(DETAIL_DECODER, 200, body(page), repairs=repairs).records
    finally:
        logging.disable(logging.NOTSET)
    assert (record.height, record.create_time) == (576, None)
    # Only a value the typed rules refuse (spaces around) counts as read leniently.
    expected = {"VideoDetail.height": 1}
    if seconds == " -99999 ":
        expected["VideoDetail.create_time"] = 1
    assert repairs.counts == expected
