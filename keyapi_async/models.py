"""Typed records for both endpoints: plain msgspec Structs, normalized once at decode time.

msgspec decodes the upstream's stringly-typed JSON straight into these (lax mode turns
``"1024"`` into ``1024``, ``"false"`` into ``False`` and a unix-seconds string into an aware
UTC ``datetime``, all in C). What msgspec cannot express is finished in ``__post_init__``:

* ``-99999`` (the upstream's "unknown") becomes ``None`` in every integer field;
* an empty ``region`` becomes ``None``;
* ``product_category_list`` and ``video_products`` arrive as JSON *inside a string* or,
  at times, as a real array: both become lists (product ids stay strings, they exceed 2**53).

Unusual values never cost the answer (it was paid for and would come back the same). Only
when the typed decode refuses a record, :mod:`keyapi_async.salvage` reads it field by field:

* text: a lone UTF-16 surrogate escape (``"\\ud83d"`` with no low half) and bytes that are
  not UTF-8 become U+FFFD;
* ``video_id``, ``user_id`` and other text sent as a JSON integer: its exact decimal text
  (an id sent as a non-integral number has lost digits: ``None``);
* integer fields: spaces around are ignored (``" 1024"`` -> 1024), ``"1024.0"`` -> 1024,
  ``height`` and ``width`` drop a ``px`` unit (``"576px"`` -> 576); otherwise ``None``
  (``"1.5"``, ``""``, ``"abc"``);
* ``create_time``: unix seconds with spaces around; otherwise ``None`` (``""``, ``"abc"``);
* ``created_by_ai``: also ``yes``/``no``, ``y``/``n``, ``t``/``f`` in any case; otherwise
  ``None`` (``""``);
* ``video_products``: ``"null"`` -> ``None``; ids without brackets (``"1729436418527695003"``
  or ``"1, 2"``) -> a list of them; a list holding anything but integer ids (``"[1.5]"``)
  -> ``None``;
* ``product_category_list``: ``"null"`` -> ``None``; one category object -> a one-item
  list; anything else (``"{}"``, ``"[1]"``) -> ``None``.

Each value read this way is counted in ``client.stats.coerced_values`` (by ``Model.field``)
and the first of each field is logged at WARNING. A record that is not a JSON object, or
whose ``video_id`` is absent or cannot be read, is reported as failed with its reason.

Lineage: ``fetched_at`` (when the crawl received the answer, aware UTC) and ``request_id``
(the upstream's, for support tickets) are the last two fields of both records. They are
:data:`msgspec.UNSET` unless a crawl with lineage on set them, and an unset field is left
out of JSON and of the sinks' columns (see :data:`LINEAGE_FIELDS`).

Records are ``gc=False``: they hold only scalars and lists of scalars, never cycles, and
skipping GC tracking keeps bulk decoding of millions of records fast.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import TYPE_CHECKING

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "LINEAGE_FIELDS",
    "UNKNOWN",
    "ProductCategory",
    "RankType",
    "RankedVideo",
    "VideoDetail",
    "VideoRankField",
]

#: The lineage fields a crawl sets on every record (the last two fields of each record type).
LINEAGE_FIELDS = ("fetched_at", "request_id")

#: The upstream's marker for "unknown" in numeric fields; decoded as ``None``.
UNKNOWN = -99999


class VideoRankField(IntEnum):
    """What a ranking list is sorted by (``video_rank_field``)."""

    VIEWS = 1  #: total_views_cnt
    SALES = 2  #: total_video_sale_cnt


class RankType(IntEnum):
    """The period of a ranking list (``rank_type``)."""

    DAY = 1
    WEEK = 2  #: keyed by the Monday of the week
    MONTH = 3  #: keyed by the first day of the month


class ProductCategory(msgspec.Struct, gc=False):
    """A product category attached to a ranked video."""

    if TYPE_CHECKING:
        category_id: str | None = None
    else:
        # Seen as a string upstream; accept a bare number too and normalize to str.
        category_id: str | int | None = None
    category_name: str | None = None

    def __post_init__(self) -> None:
        if self.category_id is not None and not isinstance(self.category_id, str):
            self.category_id = str(self.category_id)


# Decoders for the JSON-inside-a-string fields, configured once.
_CATEGORIES = msgspec.json.Decoder(list[ProductCategory], strict=False)
_PRODUCT_IDS = msgspec.json.Decoder(list[str | int])


def _categories(value: object) -> list[ProductCategory] | None:
    if value is None or isinstance(value, list):
        return value  # already decoded by msgspec
    text = str(value).strip()
    if not text or text == "[]":
        return []
    try:
        return _CATEGORIES.decode(text)
    except msgspec.MsgspecError as exc:
        # Raised inside __post_init__, it fails the typed decode: salvage.py reads the record.
        raise ValueError(f"product_category_list is not a JSON list: {exc}") from None


def _product_ids(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text or text == "[]":
            return []
        try:
            items = _PRODUCT_IDS.decode(text)
        except msgspec.MsgspecError as exc:
            raise ValueError(f"video_products is not a JSON list: {exc}") from None
    else:
        items = value  # type: ignore[assignment]
    # Bare numbers decode exactly as Python ints (no float rounding); keep ids as strings.
    return list(map(str, items))


def _normalize(record: _Video, int_fields: tuple[str, ...]) -> None:
    if record.region == "":
        record.region = None
    # One C-level pass over all fields; the per-field loop runs only where a sentinel is.
    if UNKNOWN in msgspec.structs.astuple(record):
        for name in int_fields:
            if getattr(record, name) == UNKNOWN:
                setattr(record, name, None)


class _Video(msgspec.Struct, gc=False):
    """Fields both endpoints share. ``video_id`` is required: a record without a readable
    one is not a record (salvage.py reports it failed)."""

    video_id: str
    user_id: str | None = None
    unique_id: str | None = None
    video_desc: str | None = None
    create_time: datetime | None = None
    created_by_ai: bool | None = None
    duration: int | None = None
    region: str | None = None
    reflow_cover: str | None = None
    sales_flag: int | None = None
    total_views_cnt: int | None = None
    total_digg_cnt: int | None = None
    total_comments_cnt: int | None = None
    total_shares_cnt: int | None = None
    total_favorites_cnt: int | None = None
    total_video_sale_cnt: int | None = None
    total_video_sale_gmv_amt: int | None = None


class VideoDetail(_Video, gc=False):
    """One video of ``GET /v1/tiktok/video/detail/analytics``.

    ``create_time`` is an aware UTC datetime; ``-99999`` counts are ``None``; an empty
    ``region`` is ``None``; missing fields are ``None``. A value that does not fit its type
    is read leniently or becomes ``None`` (see the module docstring), never failing the
    answer; ``" 1024"`` in ``height`` is 1024, a numeric ``video_id`` its decimal text.
    """

    ratio: str | None = None
    height: int | None = None
    width: int | None = None
    data_size: int | None = None
    total_views_1d_cnt: int | None = None
    total_views_7d_cnt: int | None = None
    total_views_30d_cnt: int | None = None
    total_digg_1d_cnt: int | None = None
    total_digg_7d_cnt: int | None = None
    total_digg_30d_cnt: int | None = None
    # Lineage (see the module docstring): last, so sinks can drop them as a tail.
    fetched_at: datetime | UnsetType = UNSET
    request_id: str | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        _normalize(self, _DETAIL_INT_FIELDS)


class RankedVideo(_Video, gc=False):
    """One item of ``GET /v1/tiktok/video/ranking/analytics``, in rank order.

    ``product_category_list`` and ``video_products`` are decoded from the JSON string the
    upstream sends (or the real array it sometimes sends) into lists. ``"null"`` in either
    is ``None``; product ids sent without brackets are a list of them; a value that cannot
    be read is ``None`` (see the module docstring), never failing the answer.
    """

    nick_name: str | None = None
    avatar: str | None = None
    category: str | None = None
    if TYPE_CHECKING:
        product_category_list: list[ProductCategory] | None = None
        video_products: list[str] | None = None
    else:
        # The wire carries a JSON string or a real array; __post_init__ makes both a list.
        product_category_list: str | list[ProductCategory] | None = None
        video_products: str | list[str | int] | None = None
    fetched_at: datetime | UnsetType = UNSET
    request_id: str | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        _normalize(self, _RANKING_INT_FIELDS)
        self.product_category_list = _categories(self.product_category_list)
        self.video_products = _product_ids(self.video_products)


def _int_fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    return tuple(f.name for f in msgspec.structs.fields(cls) if f.type == (int | None))


_DETAIL_INT_FIELDS = _int_fields(VideoDetail)
_RANKING_INT_FIELDS = _int_fields(RankedVideo)
