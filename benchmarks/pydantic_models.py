"""Pydantic v2 models equivalent to the SDK's, doing the same normalization.

What a careful pydantic user would write: lax mode turns ``"1024"`` into 1024, ``"false"``
into False and a unix-seconds string into an aware UTC datetime (as msgspec's lax mode
does); validators map ``-99999`` to None, an empty region to None, and decode the
JSON-inside-a-string fields (with pydantic's own Rust JSON parser) into lists.
``decode.check_equivalent`` asserts both produce the same values before anything is timed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import pydantic_core
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

UNKNOWN = -99999


def _unknown_to_none(value: int | None) -> int | None:
    return None if value == UNKNOWN else value


def _empty_to_none(value: str | None) -> str | None:
    return None if value == "" else value


def _json_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        return pydantic_core.from_json(text) if text else []
    return value


def _product_ids(value: Any) -> Any:
    items = _json_list(value)
    if isinstance(items, list):
        return [item if isinstance(item, str) else str(item) for item in items]
    return items


Count = Annotated[int | None, AfterValidator(_unknown_to_none)]
Region = Annotated[str | None, AfterValidator(_empty_to_none)]


class ProductCategoryModel(BaseModel):
    """Pydantic twin of ProductCategory."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    category_id: str | None = None
    category_name: str | None = None


class _VideoModel(BaseModel):
    video_id: str | None = None
    user_id: str | None = None
    unique_id: str | None = None
    video_desc: str | None = None
    create_time: datetime | None = None
    created_by_ai: bool | None = None
    duration: Count = None
    region: Region = None
    reflow_cover: str | None = None
    sales_flag: Count = None
    total_views_cnt: Count = None
    total_digg_cnt: Count = None
    total_comments_cnt: Count = None
    total_shares_cnt: Count = None
    total_favorites_cnt: Count = None
    total_video_sale_cnt: Count = None
    total_video_sale_gmv_amt: Count = None


class VideoDetailModel(_VideoModel):
    """Pydantic twin of VideoDetail."""

    ratio: str | None = None
    height: Count = None
    width: Count = None
    data_size: Count = None
    total_views_1d_cnt: Count = None
    total_views_7d_cnt: Count = None
    total_views_30d_cnt: Count = None
    total_digg_1d_cnt: Count = None
    total_digg_7d_cnt: Count = None
    total_digg_30d_cnt: Count = None


class RankedVideoModel(_VideoModel):
    """Pydantic twin of RankedVideo."""

    nick_name: str | None = None
    avatar: str | None = None
    category: str | None = None
    product_category_list: Annotated[
        list[ProductCategoryModel] | None, BeforeValidator(_json_list)
    ] = None
    video_products: Annotated[list[str] | None, BeforeValidator(_product_ids)] = None


class DetailEnvelope(BaseModel):
    """The detail endpoint's envelope."""

    code: int
    message: str | None = None
    data: list[VideoDetailModel] | None = None
    requestId: str | None = None


class RankingEnvelope(BaseModel):
    """The ranking endpoint's envelope."""

    code: int
    message: str | None = None
    data: list[RankedVideoModel] | None = None
    requestId: str | None = None
