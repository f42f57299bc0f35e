"""Query-parameter validation for both endpoints, with the API's error messages.

Parameters are checked in the order the spec lists them and the first
problem wins.  An absent parameter and an empty one are both "missing".
Unknown extra parameters are ignored, as HTTP APIs usually do.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from keyapi_async.testing.data import RankingQuery

MAX_VIDEO_IDS = 10
MAX_PAGE_NUM = 100_000
MAX_PAGE_SIZE = 10

_DIGITS = re.compile(r"[0-9]+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class InvalidParams(Exception):
    """A request the API answers with HTTP 400; ``str(exc)`` is the message."""


def _missing(name: str) -> InvalidParams:
    return InvalidParams(f"Missing required parameter: {name}")


def _invalid(name: str) -> InvalidParams:
    return InvalidParams(f"Invalid parameter: {name}")


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise _missing(name)
    return value


def _int_in(params: Mapping[str, str], name: str, low: int, high: int) -> int:
    value = _required(params, name)
    # Only plain decimal digits: "+1", " 1", "1.0" are rejected like any junk.
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise _invalid(name)
    return int(value)


def parse_video_ids(params: Mapping[str, str]) -> list[str]:
    """Validate ``video_ids`` (1..10 comma-separated all-digit ids) and split it."""
    ids = _required(params, "video_ids").split(",")
    if len(ids) > MAX_VIDEO_IDS or not all(_DIGITS.fullmatch(i) for i in ids):
        raise _invalid("video_ids")
    return ids


def parse_ranking(params: Mapping[str, str]) -> tuple[RankingQuery, int, int]:
    """Validate the ranking parameters; return the list query, page_num and page_size."""
    date = _required(params, "date")
    if not _DATE.fullmatch(date):
        raise _invalid("date")
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise _invalid("date") from None
    region = _required(params, "region")
    field = _int_in(params, "video_rank_field", 1, 2)
    rank_type = _int_in(params, "rank_type", 1, 3)
    page_num = _int_in(params, "page_num", 1, MAX_PAGE_NUM)
    page_size = _int_in(params, "page_size", 1, MAX_PAGE_SIZE)
    category = params.get("product_category_id")
    if category is not None and not _DIGITS.fullmatch(category):
        raise _invalid("product_category_id")
    ai = params.get("created_by_ai")
    if ai is not None and ai not in ("true", "false"):
        raise _invalid("created_by_ai")
    return RankingQuery(date, region, field, rank_type, category, ai), page_num, page_size
