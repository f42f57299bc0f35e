"""Typed records for both endpoints: plain msgspec Structs, normalized once per answer.

msgspec decodes the upstream's stringly-typed JSON straight into these (lax mode turns
``"1024"`` into ``1024``, ``"false"`` into ``False`` and a unix-seconds string into an aware
UTC ``datetime``, all in C). What msgspec cannot express is finished by one pass over the
decoded page, :func:`finish_details` or :func:`finish_ranking`, which
:mod:`keyapi_async.pipeline.decoding` runs on every answer it returns:

* ``-99999`` (the upstream's "unknown") becomes ``None`` in every integer field, and in
  ``create_time`` (where it would read as unix seconds: a date in December 1969);
* an empty ``region`` becomes ``None``;
* ``product_category_list`` and ``video_products`` arrive as JSON *inside a string* or,
  at times, as a real array: both become lists (product ids stay strings, they exceed 2**53).

Why a page pass and not ``__post_init__``: msgspec would call a Python ``__post_init__``
once per record, inside its decode. The page pass reads all the page's records once,
after the decode (``msgspec.structs.astuple``), and works on whole columns with C-level
``map``/``compress``/``split``; product ids in their common form are split out of all the
page's texts at once instead of decoded to ints and printed back (:func:`_split_product_ids`).
The records are plain Structs without hooks: one you build yourself, or decode with your
own msgspec decoder, gets msgspec's conversions only, not these.

Unusual values never cost the answer (it was paid for and would come back the same). Only
when the typed decode (or the page pass, for a nested text) refuses a record,
:mod:`keyapi_async.pipeline.salvage` reads it field by field:

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

from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from enum import IntEnum
from itertools import chain, compress, repeat
from operator import eq, itemgetter
from typing import TYPE_CHECKING, Any

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
# The marker as msgspec reads it into a datetime field (unix seconds): also "unknown".
_UNKNOWN_TIME = datetime.fromtimestamp(UNKNOWN, timezone.utc)


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

    ``create_time`` is an aware UTC datetime; ``-99999`` counts and times are ``None``; an
    empty ``region`` is ``None``; missing fields are ``None``. A value that does not fit its type
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
        # The wire carries a JSON string or a real array; finish_ranking makes both a list.
        product_category_list: str | list[ProductCategory] | None = None
        video_products: str | list[str | int] | None = None
    fetched_at: datetime | UnsetType = UNSET
    request_id: str | UnsetType | None = UNSET


# -- the page pass ------------------------------------------------------------------------
#
# Every per-record step runs inside C-level map/compress/join/split, never a Python loop.
# Records are read once, all fields at a time, by msgspec.structs.astuple (a C copy of the
# slots; attrgetter/getattr take the generic attribute lookup per field) into one flat
# list, and a column is a strided slice of it. docs/benchmarks.md has the profile behind
# each choice, and what each bought.


class _Layout:
    """Where a record type's fields sit in a row of ``msgspec.structs.astuple``."""

    def __init__(self, cls: type[msgspec.Struct]) -> None:
        fields = msgspec.structs.fields(cls)
        self.width = len(fields)
        self.at = {f.name: i for i, f in enumerate(fields)}
        #: (position, name) of every integer field: -99999 there becomes None
        self.ints = tuple((i, f.name) for i, f in enumerate(fields) if f.type == (int | None))
        #: (position, name) of every datetime field: -99999 seconds there becomes None
        self.times = tuple(
            (i, f.name) for i, f in enumerate(fields) if f.type == (datetime | None)
        )


_DETAIL = _Layout(VideoDetail)
_RANKING = _Layout(RankedVideo)

# Runs a map() to its end in C, keeping nothing.
_consume: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend

# What msgspec raises besides its own errors (see decoding._UNDECODABLE).
_UNDECODABLE = (msgspec.MsgspecError, UnicodeError, RecursionError)

# One value's decoders (the rules), configured once: categories lax like the records,
# product ids strict (a float or a boolean is not an id).
_CATEGORIES = msgspec.json.Decoder(list[ProductCategory], strict=False)
_PRODUCT_IDS = msgspec.json.Decoder(list[str | int])
# A page's video_products texts as one JSON array, read as raw spans (see _join_exactly).
_SPANS = msgspec.json.Decoder(list[msgspec.Raw])


def finish_categories(value: object) -> list[ProductCategory] | None:
    """One ``product_category_list`` as decoded (text, list or None) -> its list.

    Raises ValueError for text that is not a JSON list of categories: the typed decode has
    failed that record, and :mod:`keyapi_async.pipeline.salvage` reads it leniently.
    """
    if value is None or isinstance(value, list):
        return value  # already decoded by msgspec
    text = str(value).strip()
    if not text or text == "[]":
        return []
    try:
        return _CATEGORIES.decode(text)
    except msgspec.MsgspecError as exc:
        raise ValueError(f"product_category_list is not a JSON list: {exc}") from None


def finish_product_ids(value: object) -> list[str] | None:
    """One ``video_products`` as decoded (text, list or None) -> its list of id strings.

    Raises ValueError for text that is not a JSON list of ids (see :func:`finish_categories`).
    """
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


def _join_exactly(texts: list[Any]) -> tuple[list[str], str] | None:
    """``texts`` joined into one JSON array ``[t0,t1,...]``, or None unless that is exact.

    Exact means each text is one JSON value on its own. Joining alone does not ensure it:
    a malformed text can end early or swallow its neighbour (``[1],[2`` then ``3]`` parse
    as two valid lists, shifted). So the array is first read as raw spans (which validates
    the JSON): each span is a complete value, spans are separated by at least a comma, so
    if every span is exactly as long as its text, the spans tile the array with no byte to
    spare: span i *is* text i. None also for an item that is not text (a real array, None)
    and for text with spaces around (read one by one instead). Returns the texts as joined
    (``""``, an empty list, as ``"[]"``) and the array.
    """
    if "" in texts:
        texts = ["[]" if t == "" else t for t in texts]
    try:
        joined = f"[{','.join(texts)}]"  # TypeError: an item is not text
        spans = _SPANS.decode(joined)
    except (TypeError, *_UNDECODABLE):
        return None
    # Spans count UTF-8 bytes: the texts' lengths are the same when the page is ASCII.
    sizes = map(len, texts) if joined.isascii() else map(len, map(str.encode, texts))
    if len(spans) != len(texts) or list(map(len, spans)) != list(sizes):
        return None
    return texts, joined


# Bytes that a valid JSON value made only of arrays of non-negative integers cannot hold:
# the starts of objects, strings and literals, a sign, a fraction, an exponent; and a
# newline, which _split_product_ids uses to end a text.
_NOT_IN_IDS = tuple(bytes([c]) for c in b'{"tfn-.eE\n')
_FIRST = itemgetter(0)


def _split_product_ids(texts: list[Any]) -> list[list[str]] | None:
    """A page's ``video_products`` texts as lists of id strings, or None unless every text
    is in the common form, a flat JSON list of plain integers (``[1729436418527695003]``).

    Then a text's ids are exactly its digit runs: splitting them out of the page's texts at
    once costs a fraction of decoding each text to ints and printing every int back with
    ``str()`` (for a 19-digit id, more than the split).
    """
    joined = _join_exactly(texts)
    if joined is None:
        return None
    texts, array = joined
    n = len(texts)
    data = array.encode()
    if (
        not n
        or any(map(data.__contains__, _NOT_IN_IDS))  # one memchr() each
        or "".join(map(_FIRST, texts)) != "[" * n
        or data.count(b"[") != n + 1
    ):
        return None
    # Each text is a valid JSON value starting with "[", with one "[" and none of the
    # bytes above: a flat list of integers without sign, fraction or (JSON forbids them)
    # leading zeros. Inside the outer "[[" and "]]", "],[" ends one text and starts the
    # next.
    lines = data[2:-2].replace(b"],[", b"\n").replace(b",", b" ").decode().split("\n")
    return list(map(str.split, lines))


def _category_lists(texts: list[Any]) -> list[Any]:
    """A page's ``product_category_list`` values made lists (ValueError as
    :func:`finish_categories`).

    When every value is non-empty text, the decoder is mapped over them directly: one C
    call per text, no Python frame (JSON ignores the spaces around a text that the rule
    strips). Anything else, or any text the decoder refuses, takes the rule per value.
    Batching the texts into one decoder call measured no faster: the cost is in making
    the category objects, not in the calls.
    """
    if "" not in texts:  # "" means an empty list, which JSON would refuse
        try:
            return list(map(_CATEGORIES.decode, texts))  # TypeError: an item is not text
        except (TypeError, *_UNDECODABLE):
            pass
    return list(map(finish_categories, texts))


def _rows(records: list[Any]) -> list[Any]:
    """Every field of every record, flat: field k of record i is at ``i * width + k``."""
    return list(chain.from_iterable(map(msgspec.structs.astuple, records)))


def _to_clear(records: list[Any], rows: list[Any], layout: _Layout) -> list[tuple[str, list[Any]]]:
    """(field, records) pairs to set to None: ``-99999`` in an integer or a datetime
    field, ``""`` in ``region``. One C-level scan per column; the records are picked only
    in a column that holds the value."""
    width = layout.width
    found: list[tuple[str, list[Any]]] = []
    for at, name in layout.ints:
        column = rows[at::width]
        if UNKNOWN in column:
            found.append((name, list(compress(records, map(eq, column, repeat(UNKNOWN))))))
    for at, name in layout.times:
        column = rows[at::width]
        if _UNKNOWN_TIME in column:
            found.append(
                (name, list(compress(records, map(eq, column, repeat(_UNKNOWN_TIME)))))
            )
    regions = rows[layout.at["region"] :: width]
    if "" in regions:
        found.append(("region", list(compress(records, map(eq, regions, repeat(""))))))
    return found


def _clear(found: list[tuple[str, list[Any]]]) -> None:
    for name, records in found:
        _consume(map(setattr, records, repeat(name), repeat(None)))


def finish_details(records: list[VideoDetail]) -> None:
    """Finish a decoded detail page in place: ``-99999`` (counts and ``create_time``) and
    empty ``region`` -> None."""
    _clear(_to_clear(records, _rows(records), _DETAIL))


def finish_ranking(records: list[RankedVideo]) -> None:
    """Finish a decoded ranking page in place: as :func:`finish_details`, and both nested
    JSON fields made lists.

    Raises ValueError (before changing any record) when a nested text cannot be read by
    the typed rules; the caller reads the answer record by record instead. Running it twice
    is harmless: a finished record is left as it is.
    """
    rows, width = _rows(records), _RANKING.width
    categories = rows[_RANKING.at["product_category_list"] :: width]
    products = rows[_RANKING.at["video_products"] :: width]
    found = _to_clear(records, rows, _RANKING)
    # Dropped before the nested decodes allocate: a large young list would be walked by
    # every garbage collection they trigger.
    del rows
    category_lists = _category_lists(categories)
    product_ids: list[Any] | None = _split_product_ids(products)
    if product_ids is None:
        product_ids = list(map(finish_product_ids, products))
    _consume(map(setattr, records, repeat("product_category_list"), category_lists))
    _consume(map(setattr, records, repeat("video_products"), product_ids))
    _clear(found)


#: The page pass of each record type, for the decoders.
FINISHERS: dict[type[msgspec.Struct], Callable[[list[Any]], None]] = {
    VideoDetail: finish_details,
    RankedVideo: finish_ranking,
}
