"""The fallback for a complete, paid answer (code 0) that the typed decoder refused.

The fast path (:mod:`keyapi_async.pipeline.decoding`) decodes a whole envelope in one C call. When
that fails, the answer may be damaged in transit (truncated: retried) or complete but
holding values the types do not allow. A complete answer with code 0 was paid for and would
come back the same, so it is never retried for its content; this module reads what it can:

1. :func:`repair_text` fixes text in the bytes: raw control characters inside strings are
   escaped, lone UTF-16 surrogate escapes (``"\\ud83d"`` with no low half, or a low half
   alone) and bytes that are not UTF-8 become U+FFFD;
2. the envelope is decoded with ``data`` as raw records, then each record on its own by the
   typed decoder (good records cost one small C call each);
3. a record that decoder refuses is decoded untyped, and every field that does not fit is
   read leniently (:class:`RecordSalvager`; the rules are listed in
   :mod:`keyapi_async.pipeline.models`); a value with no sensible reading becomes ``None``.
   Each value read this way is counted per ``Model.field`` in a :class:`RepairLog`, which
   logs the first one of each field;
4. a record that cannot be decoded at all (not a JSON object, or a detail record whose
   ``video_id`` cannot be read) becomes a :class:`RecordFailure` with its position and reason.

Guarantee: given the raw records of a complete answer, :meth:`RecordSalvager.read` never
raises, and every record ends in exactly one of its two outputs, records or failures.
Reasons and log lines are written by the SDK and never quote a value the server sent.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from .models import (
    FINISHERS,
    LINEAGE_FIELDS,
    UNKNOWN,
    ProductCategory,
    RankedVideo,
    VideoDetail,
    finish_categories,
    finish_product_ids,
)

__all__ = [
    "RecordFailure",
    "RecordSalvager",
    "RepairLog",
    "failed_ids",
    "repair_text",
]

logger = logging.getLogger("keyapi_async")

S = TypeVar("S", bound=msgspec.Struct)

# What msgspec raises besides its own errors (see decoding._UNDECODABLE).
_UNDECODABLE = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)

_UNTYPED = msgspec.json.Decoder()

# -- text repair in the bytes ------------------------------------------------------------

_CONTROL_CHAR = re.compile(rb"[\x00-\x1f]")
#: A JSON string token (group 1: its content) and, if it is an object key, the colon after.
_STRING = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"(\s*:)?', re.DOTALL)  # unrolled: 4x faster
#: Any escape, a surrogate pair first: an alternation scanned left to right keeps ``\\\\``
#: (an escaped backslash) from being read as the start of ``\\u``.
_ESCAPE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
    rb"|\\.",
    re.DOTALL,
)
#: A cheap pre-check: some surrogate escape that is not the high half of a pair.
_MAYBE_LONE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F]"
)
REPLACEMENT = b"\\ufffd"

LONE_SURROGATE = "a lone UTF-16 surrogate escape"
INVALID_UTF8 = "bytes that are not UTF-8"


def _escape_control(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % match.group()[0]


def _lone_to_replacement(match: re.Match[bytes]) -> bytes:
    text = match.group()
    if len(text) == 6 and text[:3] in (b"\\ud", b"\\uD"):
        return REPLACEMENT
    return text  # a pair, or another escape


def escape_control_chars(body: bytes) -> bytes:
    """Escape raw control characters inside JSON strings, leaving whitespace between tokens."""
    return repair_text(body, surrogates=False, utf8=False)[0]


def repair_text(
    body: bytes, *, surrogates: bool = True, utf8: bool = True
) -> tuple[bytes, list[tuple[str | None, str]]]:
    """``body`` with its strings made decodable, and ``(key, what)`` for each value repaired.

    Raw control characters inside strings are escaped (not reported: strict JSON forbids
    them, the upstream sends them, and the text is kept as sent); lone surrogate escapes
    and invalid UTF-8 become U+FFFD and are reported with the object key they belong to.
    Returns ``body`` itself when nothing needed repair.
    """
    control = _CONTROL_CHAR.search(body) is not None
    # `in` scans bytes at memchr speed; the regex runs only where a surrogate escape is.
    lone = (
        surrogates
        and (b"\\ud" in body or b"\\uD" in body)
        and _MAYBE_LONE.search(body) is not None
    )
    bad_utf8 = False
    if utf8:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            bad_utf8 = True
    if not (control or lone or bad_utf8):
        return body, []
    out: list[bytes] = []
    fixes: list[tuple[str | None, str]] = []
    key: bytes | None = None
    last = 0
    for match in _STRING.finditer(body):
        text = fixed = match.group(1)
        what = None
        if control and _CONTROL_CHAR.search(fixed):
            fixed = _CONTROL_CHAR.sub(_escape_control, fixed)
        if lone and b"\\u" in fixed:
            replaced = _ESCAPE.sub(_lone_to_replacement, fixed)
            if replaced != fixed:
                fixed, what = replaced, LONE_SURROGATE
        if bad_utf8 and not fixed.isascii():
            try:
                fixed.decode("utf-8")
            except UnicodeDecodeError:
                fixed, what = fixed.decode("utf-8", "replace").encode("utf-8"), INVALID_UTF8
        if match.group(2) is not None:
            key = fixed
        elif what is not None:
            fixes.append((None if key is None else key.decode("utf-8", "replace"), what))
        if fixed is not text:
            out.append(body[last : match.start(1)])
            out.append(fixed)
            last = match.end(1)
    if not out:
        return body, []
    out.append(body[last:])
    return b"".join(out), fixes


# -- counting and warning ----------------------------------------------------------------


class RepairLog:
    """Counts the values the fallback had to read leniently, per ``Model.field``.

    The first repair of each field is logged at WARNING on the ``keyapi_async`` logger;
    later ones are only counted. A client keeps one (its ``stats.coerced_values`` is
    ``counts``), so "once" means once per field per client: a long-lived process that runs
    one client per job hears about each job's odd fields, and a client's stats and its
    warnings tell the same story. Messages name the field and what was done, never the
    value the server sent (it could be anything, a leaked secret or a forged log line).
    """

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self.counts: dict[str, int] = {} if counts is None else counts
        self._warned: set[str] = set()

    def note(self, where: str, what: str, request_id: str | None) -> None:
        """Count one repaired value of ``where`` (``Model.field``); warn on the first."""
        self.counts[where] = self.counts.get(where, 0) + 1
        if where not in self._warned:
            self._warned.add(where)
            logger.warning(
                "%s: %s (request id %s); the record was kept. Further values of this field "
                "are only counted in client.stats.coerced_values.",
                where, what, request_id,
            )


# -- lenient field readers ---------------------------------------------------------------


class _Unreadable(Exception):
    """A value with no sensible reading for its field (it becomes None)."""


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_PIXELS = re.compile(r"([0-9]+)\s*px", re.IGNORECASE)
_BARE_IDS = re.compile(r"[0-9]+(?:\s*,\s*[0-9]+)*")
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _read_int(value: object, pixels: bool = False) -> int | None:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        raise _Unreadable
    text = value.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        number = float(text)
        if math.isfinite(number) and number.is_integer():
            return int(number)
    if pixels and (match := _PIXELS.fullmatch(text)):
        return int(match.group(1))
    raise _Unreadable


def _read_text(value: object, is_id: bool) -> str:
    if isinstance(value, bool):
        raise _Unreadable
    if isinstance(value, int):
        return str(value)  # JSON integers decode exactly: a numeric id keeps every digit
    if isinstance(value, float) and not is_id and math.isfinite(value):
        return repr(value)  # an id as a float has lost digits already: unreadable
    raise _Unreadable


def _read_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise _Unreadable
    text = value.strip()
    if not _FLOAT.fullmatch(text):
        raise _Unreadable
    if float(text) == UNKNOWN:
        raise _Unreadable  # the upstream's "unknown", not a date in 1969: None
    try:
        return datetime.fromtimestamp(float(text), timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _Unreadable from None


def _read_bool(value: object) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Unreadable


def _json_in_string(text: str) -> Any:
    raw = repair_text(text.encode("utf-8", "surrogatepass"))[0]
    try:
        return _UNTYPED.decode(raw)
    except _UNDECODABLE:
        raise _Unreadable from None


def _read_categories(value: object) -> list[Any] | None:
    if isinstance(value, str):
        text = value.strip()
        if text == "null":
            return None
        value = _json_in_string(text)
    if isinstance(value, dict) and value:
        value = [value]  # one category object: a one-item list
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _Unreadable
    try:
        msgspec.convert(value, list[ProductCategory], strict=False)
    except msgspec.ValidationError:
        raise _Unreadable from None
    return value


def _product_id(item: object) -> str:
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, str) and item.strip().isdigit():
        return item.strip()
    raise _Unreadable


def _read_products(value: object) -> list[str] | None:
    if isinstance(value, str):
        text = value.strip()
        if text == "null":
            return None
        if _BARE_IDS.fullmatch(text):
            return [part.strip() for part in text.split(",")]  # ids without the brackets
        value = _json_in_string(text)
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if not isinstance(value, list):
        raise _Unreadable
    return [_product_id(item) for item in value]


_ID_FIELDS = frozenset({"video_id", "user_id"})
_PIXEL_FIELDS = frozenset({"height", "width"})


class _Field(NamedTuple):
    name: str
    #: the wire type, as the typed decoder accepts it (lax mode)
    wire: Any
    #: the page pass's rule for one value of the field, given the value as the wire type
    #: decoded it (raises ValueError on what it refuses), or None
    check: Callable[[Any], object] | None
    #: the lenient reading of a value the two above refused; raises _Unreadable
    read: Callable[[Any], object]


def _field(cls: type[msgspec.Struct], info: msgspec.structs.FieldInfo) -> _Field:
    name, wire = info.name, info.type
    if name == "product_category_list":
        return _Field(name, wire, finish_categories, _read_categories)
    if name == "video_products":
        return _Field(name, wire, finish_product_ids, _read_products)
    if wire == (int | None):
        pixels = name in _PIXEL_FIELDS
        return _Field(name, wire, None, lambda v: _read_int(v, pixels))
    if wire == (bool | None):
        return _Field(name, wire, None, _read_bool)
    if wire == (datetime | None):
        return _Field(name, wire, None, _read_time)
    is_id = name in _ID_FIELDS
    return _Field(name, wire, None, lambda v: _read_text(v, is_id))


class RecordFailure(NamedTuple):
    """A record of a paid answer that could not be decoded at all."""

    #: its index in the answer's ``data``
    position: int
    #: its video_id when one could be read, else None
    video_id: str | None
    #: why, in the SDK's words (never quoting the server's text)
    reason: str


class RecordSalvager(Generic[S]):
    """Decodes the raw records of one answer, leniently where the typed decoder refuses.

    ``id_required``: a record whose ``video_id`` is present but unreadable is a failure
    (a detail record is worth nothing without it); otherwise that id becomes None too.
    """

    def __init__(self, cls: type[S], *, id_required: bool) -> None:
        self.cls = cls
        self.name = cls.__name__
        self.id_required = id_required
        self.decoder = msgspec.json.Decoder(cls, strict=False)
        self.finish = FINISHERS.get(cls, _nothing_to_finish)
        # Lineage fields are the crawl's, never read from the wire.
        self.fields = {
            f.name: _field(cls, f) for f in msgspec.structs.fields(cls)
            if f.name not in LINEAGE_FIELDS
        }

    def read(
        self, raws: Sequence[msgspec.Raw], repairs: RepairLog, request_id: str | None
    ) -> tuple[list[S], list[RecordFailure]]:
        """The records that could be read (lenient where needed), and the failures."""
        records: list[S] = []
        failures: list[RecordFailure] = []
        typed = [self._typed(raw) for raw in raws]
        good = [record for record in typed if record is not None]
        try:
            self.finish(good)  # the fast path's page pass, over the records that decoded
        except ValueError:
            # Some nested text the typed rules refuse: find which records, one by one (the
            # pass changed nothing before raising, and a finished record is left as it is).
            for position, record in enumerate(typed):
                if record is not None and not self._finishes(record):
                    typed[position] = None
        for position, (raw, record) in enumerate(zip(raws, typed, strict=True)):
            if record is not None:
                records.append(record)
                continue
            outcome = self._lenient(position, raw, repairs, request_id)
            if isinstance(outcome, RecordFailure):
                failures.append(outcome)
            else:
                records.append(outcome)
        return records, failures

    def _typed(self, raw: msgspec.Raw) -> S | None:
        try:
            return self.decoder.decode(raw)
        except _UNDECODABLE:
            return None

    def _finishes(self, record: S) -> bool:
        try:
            self.finish([record])
        except ValueError:
            return False
        return True

    def _lenient(
        self, position: int, raw: msgspec.Raw, repairs: RepairLog, request_id: str | None
    ) -> S | RecordFailure:
        try:
            value = _UNTYPED.decode(raw)
        except _UNDECODABLE as exc:
            return RecordFailure(
                position, None, f"record {position} cannot be decoded ({type(exc).__name__})"
            )
        if not isinstance(value, dict):
            return RecordFailure(
                position, None, f"record {position} is a JSON {_json_type(value)}, not an object"
            )
        fixed: dict[str, Any] = {}
        for name, field in self.fields.items():
            if name not in value:
                continue
            item = value[name]
            try:
                wired = msgspec.convert(item, field.wire, strict=False)
                if field.check is not None:
                    field.check(wired)
                fixed[name] = item
                continue
            except (msgspec.ValidationError, ValueError):
                pass
            try:
                result = field.read(item)
            except _Unreadable:
                result = None
            if name == "video_id" and result is None and self.id_required:
                return RecordFailure(
                    position, None,
                    f"record {position} has a video_id that cannot be read "
                    f"(a JSON {_json_type(item)})",
                )
            fixed[name] = result
            repairs.note(f"{self.name}.{name}", _describe(item, result), request_id)
        if "video_id" not in fixed:
            return RecordFailure(position, None, f"record {position} has no video_id")
        try:
            record = msgspec.convert(fixed, self.cls, strict=False)
            self.finish([record])
            return record
        except (msgspec.ValidationError, ValueError) as exc:  # a safety net: not expected
            vid = fixed.get("video_id")
            return RecordFailure(
                position, vid if isinstance(vid, str) else None,
                f"record {position} cannot be decoded ({type(exc).__name__})",
            )


def _nothing_to_finish(records: list[Any]) -> None:
    pass


def _describe(raw: object, result: object) -> str:
    sent = f"a JSON {_json_type(raw)} the type does not allow"
    if result is None:
        return f"{sent} was set to None"
    if isinstance(result, (bool, int, datetime)):
        return f"{sent} was read as {result!r}"
    if isinstance(result, list):
        return f"{sent} was read as a list of {len(result)}"
    return f"{sent} was read as a {type(result).__name__}"


#: One salvager per record type, built once.
SALVAGERS: dict[type[msgspec.Struct], RecordSalvager[Any]] = {
    VideoDetail: RecordSalvager(VideoDetail, id_required=True),
    RankedVideo: RecordSalvager(RankedVideo, id_required=True),
}


def failed_ids(
    asked: Iterable[str], found: set[str], failures: Sequence[RecordFailure]
) -> dict[str, str]:
    """The asked ids a detail answer failed, with reasons (the rest are found or missing).

    An undecodable record with a readable id fails that id. One without a readable id could
    be any asked id the answer has no good record for, so all of those are failed rather
    than reported missing (which would say the API does not know them).
    """
    asked = list(asked)
    wanted = set(asked)
    failed: dict[str, str] = {}
    for f in failures:
        if f.video_id is not None and f.video_id in wanted and f.video_id not in found:
            failed[f.video_id] = f"undecodable record: {f.reason}"
    anonymous = [f for f in failures if f.video_id is None]
    if anonymous:
        reason = (
            f"undecodable record: {len(anonymous)} record(s) of the answer could not be "
            f"decoded and carry no readable video_id, this id may be one ({anonymous[0].reason})"
        )
        for vid in asked:
            if vid not in found and vid not in failed:
                failed[vid] = reason
    return failed
