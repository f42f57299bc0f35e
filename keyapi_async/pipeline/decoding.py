"""Turning an HTTP answer (status + body bytes) into records or a typed error.

Each endpoint has one module-level ``msgspec.json.Decoder`` typed to its envelope
``{code, message, data, requestId}``; a body is decoded exactly once on the fast path, then
its records are finished by one page pass (:data:`keyapi_async.pipeline.models.FINISHERS`).

Only when that decode fails (or the page pass refuses a nested JSON text) does anything
else run, and what depends on the body:

* not complete JSON (truncated or garbled in transit): :class:`DecodeError`, retried;
* complete, with a non-zero code: the typed error of that code;
* complete, with code 0: the answer was paid for and would come back the same, so it is
  never retried for its content. :mod:`keyapi_async.pipeline.salvage` repairs the text (raw control
  characters, lone UTF-16 surrogates, invalid UTF-8) and reads the records one by one,
  leniently where needed; records that cannot be decoded at all are returned in
  :attr:`Decoded.failed` (a ``data`` that is not a list at all raises
  :class:`MalformedAnswerError`, which is not retried either).

The envelope ``code`` is authoritative: HTTP 200 carrying ``{"code": 429}`` is a 429.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, get_args

import msgspec

from .errors import (
    DecodeError,
    KeyAPIError,
    MalformedAnswerError,
    error_for_code,
    error_for_status,
)
from .models import FINISHERS, RankedVideo, VideoDetail
from .salvage import SALVAGERS, RecordFailure, RepairLog, escape_control_chars, repair_text

__all__ = [
    "DETAIL_DECODER",
    "RANKING_DECODER",
    "Decoded",
    "Envelope",
    "RawResponse",
    "RecordFailure",
    "RepairLog",
    "decode_raw",
    "decode_response",
    "escape_control_chars",
]

T = TypeVar("T")


class Envelope(msgspec.Struct, Generic[T]):
    """The upstream's response envelope."""

    code: int
    message: str | None = None
    data: list[T] | None = None
    requestId: str | None = None


class _ErrorEnvelope(msgspec.Struct):
    # No `data`: an error answer may carry anything there, and we only need the code.
    code: int | None = None
    message: str | None = None
    requestId: str | None = None


# Besides its own errors, msgspec raises UnicodeDecodeError for bytes that are not UTF-8 and
# RecursionError for absurdly deep nesting (both found by the property tests).
_UNDECODABLE = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)

#: Decoders configured once: lax mode turns the upstream's numeric strings into ints.
DETAIL_DECODER = msgspec.json.Decoder(Envelope[VideoDetail], strict=False)
RANKING_DECODER = msgspec.json.Decoder(Envelope[RankedVideo], strict=False)
_ERROR_DECODER = msgspec.json.Decoder(_ErrorEnvelope, strict=False)

_REQUEST_ID = re.compile(rb'"requestId"\s*:\s*"([^"\\]{1,128})"')


def _sniff_request_id(body: bytes) -> str | None:
    match = _REQUEST_ID.search(body)
    return match.group(1).decode("utf-8", "replace") if match else None


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except _UNDECODABLE:
        fixed = repair_text(body)[0]
        if fixed is body:
            raise
    return decoder.decode(fixed)


def _error_from_body(
    status: int, body: bytes, retry_after: float | None, cause: str | None
) -> KeyAPIError:
    """The error for an answer that did not decode as a success envelope."""
    try:
        env = _decode(_ERROR_DECODER, body)
    except _UNDECODABLE:
        env = None
    if env is not None and env.code:
        return error_for_code(
            env.code,
            env.message or "",
            status=status,
            request_id=env.requestId,
            retry_after=retry_after,
        )
    request_id = env.requestId if env is not None else _sniff_request_id(body)
    if not 200 <= status < 300:
        # Not the documented JSON (a proxy's HTML page, say): the HTTP status decides.
        return error_for_status(
            status,
            f"HTTP {status} with a body that is not a KeyAPI envelope",
            request_id=request_id,
            retry_after=retry_after,
        )
    return DecodeError(
        f"malformed response body ({len(body)} bytes): {cause}",
        status=status,
        request_id=request_id,
    )


class Decoded(Generic[T]):
    """A success answer: its records, its request id, and the records it could not decode.

    ``failed`` is empty unless the fallback ran and found records that could not be decoded
    at all (see :mod:`keyapi_async.pipeline.salvage`); every record of ``data`` is in exactly one of
    ``records`` and ``failed``.
    """

    __slots__ = ("failed", "records", "request_id")

    def __init__(
        self,
        records: list[T],
        request_id: str | None,
        failed: Sequence[RecordFailure] = (),
    ) -> None:
        self.records = records
        self.request_id = request_id
        self.failed = failed

    def __repr__(self) -> str:
        return (
            f"Decoded(records=<{len(self.records)}>, request_id={self.request_id!r}, "
            f"failed={list(self.failed)!r})"
        )


class _RawEnvelope(msgspec.Struct):
    # The envelope of the fallback: records kept raw, to be decoded one by one, and the
    # other members of any type (a number in `message` must not lose the records).
    code: int
    message: Any = None
    data: msgspec.Raw = msgspec.Raw(b"null")
    requestId: Any = None


_RAW_ENVELOPE = msgspec.json.Decoder(_RawEnvelope, strict=False)
_RAW_RECORDS = msgspec.json.Decoder(list[msgspec.Raw] | None)
_ENVELOPE_KEYS = frozenset({"code", "message", "data", "requestId"})

#: Repairs seen by calls made without a client's RepairLog (warned once per process).
_PROCESS_REPAIRS = RepairLog()


def decode_response(
    decoder: msgspec.json.Decoder[Envelope[T]],
    status: int,
    body: bytes,
    *,
    retry_after: float | None = None,
    repairs: RepairLog | None = None,
) -> Decoded[T]:
    """Decode one answer into its :class:`Decoded` records, or raise its typed error.

    Raises the :class:`KeyAPIError` subclass matching the envelope code (or, for a body
    that is not an envelope, the HTTP status), or :class:`DecodeError` for a success body
    that is not complete JSON. A complete body with code 0 never raises for a record: see
    the module docstring. ``repairs`` counts the values read leniently (a client passes
    its own). No msgspec exception escapes.
    """
    if 200 <= status < 300:
        try:
            env = decoder.decode(body)
        except _UNDECODABLE as exc:
            return _fallback(decoder, status, body, retry_after, repairs or _PROCESS_REPAIRS, exc)
        if env.code == 0:
            records = env.data or []
            try:
                _finish(decoder, records)
            except ValueError as exc:  # a nested text the typed rules cannot read
                return _fallback(
                    decoder, status, body, retry_after, repairs or _PROCESS_REPAIRS, exc
                )
            return Decoded(records, env.requestId)
        raise error_for_code(
            env.code,
            env.message or "",
            status=status,
            request_id=env.requestId,
            retry_after=retry_after,
        )
    raise _error_from_body(status, body, retry_after, None)


def _finish(decoder: msgspec.json.Decoder[Envelope[T]], records: list[T]) -> None:
    """The page pass of the decoder's record type (models.FINISHERS); ValueError if refused."""
    finish = FINISHERS.get(_record_type(decoder))
    if finish is not None:
        finish(records)


def _fallback(
    decoder: msgspec.json.Decoder[Envelope[T]],
    status: int,
    body: bytes,
    retry_after: float | None,
    repairs: RepairLog,
    first: Exception,
) -> Decoded[T]:
    """The slow path of a 2xx answer the typed decoder refused (see the module docstring)."""
    fixes: list[tuple[str | None, str]] = []
    try:
        raw = _RAW_ENVELOPE.decode(body)  # complete JSON, text included: records are at fault
    except _UNDECODABLE:
        fixed, fixes = repair_text(body)
        if fixed is body:
            # Not complete JSON, or not an envelope: transport damage or another server.
            raise _error_from_body(status, body, retry_after, str(first)) from None
        # Broken text is the commonest cause: once repaired, the fast decoder may take it.
        try:
            env = decoder.decode(fixed)
            if env.code == 0:
                _finish(decoder, env.data or [])
        except (*_UNDECODABLE, ValueError):
            pass
        else:
            if env.code != 0:
                raise error_for_code(
                    env.code, env.message or "", status=status, request_id=env.requestId,
                    retry_after=retry_after,
                ) from None
            _note_text(decoder, fixes, repairs, env.requestId)
            return Decoded(env.data or [], env.requestId)
        try:
            raw = _RAW_ENVELOPE.decode(fixed)
        except _UNDECODABLE:
            raise _error_from_body(status, body, retry_after, str(first)) from None
    request_id = raw.requestId if isinstance(raw.requestId, str) else None
    if raw.code != 0:
        message = raw.message if isinstance(raw.message, str) else ""
        raise error_for_code(
            raw.code, message, status=status, request_id=request_id, retry_after=retry_after
        )
    _note_text(decoder, fixes, repairs, request_id)
    try:
        records = _RAW_RECORDS.decode(raw.data) or []
    except _UNDECODABLE:
        raise MalformedAnswerError(
            "the answer has code 0 but its data is not a list of records",
            status=status, request_id=request_id,
        ) from None
    salvager = SALVAGERS[_record_type(decoder)]
    good, failed = salvager.read(records, repairs, request_id)
    return Decoded(good, request_id, tuple(failed))


def _record_type(decoder: msgspec.json.Decoder[Envelope[T]]) -> type[msgspec.Struct]:
    record_type: type[msgspec.Struct] = get_args(decoder.type)[0]
    return record_type


def _note_text(
    decoder: msgspec.json.Decoder[Envelope[T]],
    fixes: list[tuple[str | None, str]],
    repairs: RepairLog,
    request_id: str | None,
) -> None:
    model = _record_type(decoder).__name__
    for key, what in fixes:
        where = f"Envelope.{key}" if key in _ENVELOPE_KEYS else f"{model}.{key or '?'}"
        repairs.note(where, f"a string held {what}, replaced by U+FFFD", request_id)


class RawResponse(msgspec.Struct, frozen=True):
    """A success answer of any endpoint, untyped: what :meth:`KeyAPIClient.request` returns.

    ``data`` is the envelope's ``data`` as decoded JSON (dicts, lists, strings, numbers:
    the API's numeric strings stay strings); ``code`` is 0 (any other code raises its typed
    error); ``message`` and ``request_id`` are the envelope's, when they are strings.
    """

    code: int
    message: str | None
    data: Any
    request_id: str | None


class _AnyEnvelope(msgspec.Struct):
    code: int
    message: Any = None
    data: Any = None
    requestId: Any = None


_ANY_ENVELOPE = msgspec.json.Decoder(_AnyEnvelope, strict=False)


def decode_raw(
    status: int, body: bytes, *, retry_after: float | None = None
) -> Decoded[RawResponse]:
    """Decode the envelope of any endpoint, leaving ``data`` untyped: one RawResponse.

    Errors are those of :func:`decode_response`: the typed error of a non-zero code (or of
    the HTTP status for a body that is not an envelope), :class:`DecodeError` for a 2xx
    body that is not complete JSON. Broken text (control characters, invalid UTF-8) is
    repaired as for the typed endpoints.
    """
    if 200 <= status < 300:
        try:
            env = _decode(_ANY_ENVELOPE, body)
        except _UNDECODABLE as exc:
            raise _error_from_body(status, body, retry_after, str(exc)) from None
        request_id = env.requestId if isinstance(env.requestId, str) else None
        message = env.message if isinstance(env.message, str) else None
        if env.code == 0:
            return Decoded([RawResponse(env.code, message, env.data, request_id)], request_id)
        raise error_for_code(
            env.code, message or "", status=status, request_id=request_id,
            retry_after=retry_after,
        )
    raise _error_from_body(status, body, retry_after, None)
