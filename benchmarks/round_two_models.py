"""The record models as round two shipped them: normalization in ``__post_init__``.

Kept only to time the page pass (``keyapi_async.pipeline.models.finish_ranking``/``finish_details``)
against what it replaced, in the same run: msgspec called ``__post_init__`` once per record,
which scanned the record for ``-99999`` and decoded the two nested JSON texts with one
decoder call each. ``decode.check_equivalent`` asserts these give the SDK's values before
anything is timed. Not the SDK's code: nothing imports this outside ``benchmarks``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from keyapi_async.pipeline.decoding import Envelope
from keyapi_async.pipeline.models import UNKNOWN, ProductCategory

_CATEGORIES = msgspec.json.Decoder(list[ProductCategory], strict=False)
_PRODUCT_IDS = msgspec.json.Decoder(list[str | int])


def _categories(value: object) -> object:
    if value is None or isinstance(value, list):
        return value
    text = str(value).strip()
    if not text or text == "[]":
        return []
    try:
        return _CATEGORIES.decode(text)
    except msgspec.MsgspecError as exc:
        raise ValueError(f"product_category_list is not a JSON list: {exc}") from None


def _product_ids(value: Any) -> Any:
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
        items = value
    return list(map(str, items))


def _normalize(record: Any, int_fields: tuple[str, ...]) -> None:
    if record.region == "":
        record.region = None
    if UNKNOWN in msgspec.structs.astuple(record):
        for name in int_fields:
            if getattr(record, name) == UNKNOWN:
                setattr(record, name, None)


class _Video(msgspec.Struct, gc=False):
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
    """Round two's ``VideoDetail``."""

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
    fetched_at: datetime | UnsetType = UNSET
    request_id: str | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        _normalize(self, _DETAIL_INT_FIELDS)


class RankedVideo(_Video, gc=False):
    """Round two's ``RankedVideo``."""

    nick_name: str | None = None
    avatar: str | None = None
    category: str | None = None
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

DETAIL_DECODER = msgspec.json.Decoder(Envelope[VideoDetail], strict=False)
RANKING_DECODER = msgspec.json.Decoder(Envelope[RankedVideo], strict=False)


def decode(decoder: msgspec.json.Decoder[Envelope[msgspec.Struct]], body: bytes) -> list[object]:
    """Round two's fast path: one typed decode (the hooks run inside it)."""
    env = decoder.decode(body)
    if env.code != 0:
        raise ValueError(f"code {env.code}")
    return list(env.data or [])
