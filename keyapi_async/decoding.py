"""Turning an HTTP answer (status + body bytes) into records or a typed error.

Each endpoint has one module-level ``msgspec.json.Decoder`` typed to its envelope
``{code, message, data, requestId}``; a body is decoded exactly once on the fast path.
Two slow paths exist for what the upstream really sends:

* raw control characters inside strings (strict JSON forbids them): only when the fast
  decode fails and the body holds such bytes, they are escaped and the body decoded again;
* error answers whose ``data`` is not a list: the envelope is decoded without ``data``.

The envelope ``code`` is authoritative: HTTP 200 carrying ``{"code": 429}`` is a 429.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

import msgspec

from .errors import DecodeError, KeyAPIError, error_for_code, error_for_status
from .models import RankedVideo, VideoDetail

__all__ = ["DETAIL_DECODER", "RANKING_DECODER", "Envelope", "decode_response"]

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

_CONTROL_CHAR = re.compile(rb"[\x00-\x1f]")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_REQUEST_ID = re.compile(rb'"requestId"\s*:\s*"([^"\\]{1,128})"')


def _escape_in_string(match: re.Match[bytes]) -> bytes:
    return _CONTROL_CHAR.sub(lambda c: b"\\u%04x" % c.group()[0], match.group())


def escape_control_chars(body: bytes) -> bytes:
    """Escape raw control characters inside JSON strings, leaving whitespace between tokens."""
    return _JSON_STRING.sub(_escape_in_string, body)


def _sniff_request_id(body: bytes) -> str | None:
    match = _REQUEST_ID.search(body)
    return match.group(1).decode("utf-8", "replace") if match else None


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except msgspec.DecodeError:
        if not _CONTROL_CHAR.search(body):
            raise
    return decoder.decode(escape_control_chars(body))


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


def decode_response(
    decoder: msgspec.json.Decoder[Envelope[T]],
    status: int,
    body: bytes,
    *,
    retry_after: float | None = None,
) -> tuple[list[T], str | None]:
    """Decode one answer into ``(records, request_id)``, or raise its typed error.

    Raises the :class:`KeyAPIError` subclass matching the envelope code (or, for a body
    that is not an envelope, the HTTP status), or :class:`DecodeError` for a malformed
    success body. No msgspec exception escapes.
    """
    if 200 <= status < 300:
        try:
            env = _decode(decoder, body)
        except _UNDECODABLE as exc:
            raise _error_from_body(status, body, retry_after, str(exc)) from None
        if env.code == 0:
            return (env.data or []), env.requestId
        raise error_for_code(
            env.code,
            env.message or "",
            status=status,
            request_id=env.requestId,
            retry_after=retry_after,
        )
    raise _error_from_body(status, body, retry_after, None)
