"""Argument validation: every check that can refuse bad input before a credit is spent."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidParameterError
from .models import RankType, VideoRankField

__all__ = [
    "MAX_PAGE_NUM",
    "MAX_PAGE_SIZE",
    "REGIONS",
    "RankingQuery",
    "api_path",
    "check_max_pages",
    "check_page",
    "check_region",
    "query_params",
    "ranking_query",
    "video_id",
]

MAX_PAGE_NUM = 100_000
MAX_PAGE_SIZE = 10

_VIDEO_ID = re.compile(r"[0-9]{1,20}")  # [0-9], not \d: \d also matches other scripts' digits
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Segments of unreserved characters only: no scheme, host, query, fragment or escape.
_API_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]+)+")
_PARAM_NAME = re.compile(r"[A-Za-z0-9._~-]+")

#: The 249 ISO 3166-1 alpha-2 country codes (a static list: a region outside it is refused
#: before a credit is spent, e.g. ``usa`` or ``UK``).
REGIONS = frozenset((
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX",
    "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ",
    "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK",
    "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM",
    "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR",
    "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS",
    "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN",
    "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN",
    "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV",
    "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ",
    "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI",
    "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM",
    "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC",
    "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV",
    "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR",
    "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
))


def video_id(value: object, position: int | None = None) -> str:
    """Return ``value`` as an id string, or raise InvalidParameterError.

    An id is a positive decimal number of at most 20 digits, given as ``str`` or ``int``
    (ids exceed 2**53, so they stay strings from here on).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        text = None
    if text is None or not _VIDEO_ID.fullmatch(text) or not text.strip("0"):
        where = f" at position {position}" if position is not None else ""
        raise InvalidParameterError(
            f"invalid video id {value!r}{where}: expected a positive decimal number "
            "of at most 20 digits (str or int)"
        )
    return text


def _enum(value: object, enum: type[VideoRankField] | type[RankType], name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return enum(value)
        except ValueError:
            pass
    allowed = ", ".join(f"{m.value} ({m.name})" for m in enum)
    raise InvalidParameterError(f"invalid {name} {value!r}: expected one of {allowed}")


def _date(value: object, rank_type: int, today: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str) and _DATE.fullmatch(value):
        with contextlib.suppress(ValueError):  # 2026-02-30: falls through to the error below
            value = dt.date.fromisoformat(value)
    if not isinstance(value, dt.date):
        raise InvalidParameterError(
            f"invalid date {value!r}: expected YYYY-MM-DD (a str, or a date object)"
        )
    if rank_type == RankType.WEEK and value.weekday() != 0:
        raise InvalidParameterError(
            f"invalid date {value}: weekly lists are keyed by a Monday "
            f"(the Monday of that week is {value - dt.timedelta(days=value.weekday())})"
        )
    if rank_type == RankType.MONTH and value.day != 1:
        raise InvalidParameterError(
            f"invalid date {value}: monthly lists are keyed by the 1st "
            f"(that month is {value.replace(day=1)})"
        )
    # Data is published T+1; a date after today (UTC) exists in no time zone yet.
    if value > today:
        raise InvalidParameterError(
            f"invalid date {value}: it is in the future (ranking data is published the day after)"
        )
    return value


def check_region(region: object) -> str:
    """``region`` as an upper-case ISO 3166-1 alpha-2 code (``"gb"`` -> ``"GB"``), or
    InvalidParameterError (``"usa"``, ``"UK"``, ``" US"``, ``""``)."""
    if isinstance(region, str) and region.upper() in REGIONS:
        return region.upper()
    hint = ""
    if isinstance(region, str) and region.strip().upper() in REGIONS:
        hint = f" (without the spaces: {region.strip().upper()!r})"
    elif isinstance(region, str) and region.upper() == "UK":
        hint = " (the United Kingdom is 'GB')"
    elif isinstance(region, str) and len(region) == 3:
        hint = " (three-letter codes such as 'USA' are not accepted; use two letters)"
    raise InvalidParameterError(
        f"invalid region {region!r}: expected a two-letter ISO 3166-1 alpha-2 country code "
        f"such as 'US' or 'GB'{hint}"
    )


def _page_int(value: object, name: str, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high:
        return value
    raise InvalidParameterError(f"invalid {name} {value!r}: expected an int in 1..{high}")


def check_page(page_num: object, page_size: object) -> tuple[int, int]:
    """Validate a page number (1..100000) and a page size (1..10)."""
    return (
        _page_int(page_num, "page_num", MAX_PAGE_NUM),
        _page_int(page_size, "page_size", MAX_PAGE_SIZE),
    )


def check_max_pages(max_pages: object) -> int | None:
    """Validate ``max_pages``: None (no limit) or an int >= 1."""
    if max_pages is None or (
        isinstance(max_pages, int) and not isinstance(max_pages, bool) and max_pages >= 1
    ):
        return max_pages
    raise InvalidParameterError(f"invalid max_pages {max_pages!r}: expected an int >= 1")


@dataclass(frozen=True)
class RankingQuery:
    """A validated ranking list query, without its page."""

    date: dt.date
    region: str
    video_rank_field: VideoRankField
    rank_type: RankType
    product_category_id: str | None = None
    created_by_ai: bool | None = None

    def params(self, page_num: int, page_size: int) -> dict[str, str]:
        """The query string of one page, every value as the API expects it."""
        params = {
            "date": self.date.isoformat(),
            "region": self.region,
            "video_rank_field": str(int(self.video_rank_field)),
            "rank_type": str(int(self.rank_type)),
            "page_num": str(page_num),
            "page_size": str(page_size),
        }
        if self.product_category_id is not None:
            params["product_category_id"] = self.product_category_id
        if self.created_by_ai is not None:
            params["created_by_ai"] = "true" if self.created_by_ai else "false"
        return params


def ranking_query(
    *,
    date: object,
    region: object,
    video_rank_field: object,
    rank_type: object,
    product_category_id: object = None,
    created_by_ai: object = None,
    today: dt.date | None = None,
) -> RankingQuery:
    """Validate ranking parameters into a :class:`RankingQuery`, or raise InvalidParameterError."""
    rank_field = VideoRankField(_enum(video_rank_field, VideoRankField, "video_rank_field"))
    period = RankType(_enum(rank_type, RankType, "rank_type"))
    if today is None:
        today = dt.datetime.now(dt.timezone.utc).date()
    day = _date(date, period, today)
    region = check_region(region)
    category: str | None = None
    if product_category_id is not None:
        if isinstance(product_category_id, bool) or not isinstance(product_category_id, (str, int)):
            category = None
        else:
            category = str(product_category_id)
        if category is None or not _VIDEO_ID.fullmatch(category):
            raise InvalidParameterError(
                f"invalid product_category_id {product_category_id!r}: expected a numeric id"
            )
    if created_by_ai is not None and not isinstance(created_by_ai, bool):
        raise InvalidParameterError(
            f"invalid created_by_ai {created_by_ai!r}: expected True, False or None"
        )
    return RankingQuery(day, region, rank_field, period, category, created_by_ai)


def api_path(path: object) -> str:
    """Validate the path of a KeyAPI endpoint: relative to the base URL, e.g.
    ``/v1/tiktok/video/trend/analytics``; no scheme, host, query, ``.`` or ``..``."""
    if (
        isinstance(path, str) and _API_PATH.fullmatch(path)
        and not any(segment in (".", "..") for segment in path.split("/"))
    ):
        return path
    if isinstance(path, str) and ("?" in path or "#" in path):
        why = "it holds a query or fragment: pass the parameters in params"
    elif isinstance(path, str) and ("://" in path or path.startswith("//")):
        why = "it names a host: the client sends every request to its base_url"
    else:
        why = "expected an API path such as '/v1/tiktok/video/trend/analytics'"
    raise InvalidParameterError(f"invalid path {path!r}: {why}")


def query_params(params: object) -> dict[str, str]:
    """Validate a request's parameters into the strings the API takes.

    A mapping of names to str, int or bool values (bools as ``"true"`` / ``"false"``, as the
    API writes them); None values are left out. Anything else is refused.
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidParameterError(
            f"invalid params of type {type(params).__name__}: expected a dict of names to "
            "str, int or bool values"
        )
    query: dict[str, str] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
            raise InvalidParameterError(f"invalid parameter name {name!r}")
        if value is None:
            continue
        if isinstance(value, bool):
            query[name] = "true" if value else "false"
        elif isinstance(value, int):
            query[name] = str(value)
        elif isinstance(value, str) and value.isprintable():
            query[name] = value
        else:
            raise InvalidParameterError(
                f"invalid value for parameter {name!r} of type {type(value).__name__}: "
                "expected a printable str, an int or a bool"
            )
    return query
