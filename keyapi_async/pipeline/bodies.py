"""Reading an answer's body within a byte limit, decompressing gzip/deflate as it arrives.

Guarantee: at most ``limit`` bytes are taken off the wire, and decompression produces at
most ``limit + 1`` bytes before reading stops (zlib's ``max_length``, 256 KiB a call), so
the body held in memory never exceeds ``limit`` bytes plus one network chunk and one such
step, whatever the server sends: a 200 MB answer, an endless chunked stream or a gzip bomb
each cost about ``limit`` bytes (4.5 MiB at the 4 MiB default, measured by tracemalloc).

Decompression is ours (the session runs with ``auto_decompress=False`` and asks only for
gzip and deflate), so the bound holds with every aiohttp version, not only those whose own
decompressor is capped.
"""

from __future__ import annotations

import zlib
from typing import Final, Protocol

__all__ = ["ACCEPT_ENCODING", "BodyDamaged", "BodyTooLarge", "read_body"]

#: The encodings :func:`read_body` can undo, as sent in Accept-Encoding.
ACCEPT_ENCODING: Final = "gzip, deflate"

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
# Output per zlib call: zlib grows its output buffer by doubling, so one call asked for the
# whole limit can briefly hold twice that; small calls keep the peak at the limit + this.
_STEP: Final = 256 * 1024


class BodyTooLarge(Exception):
    """The body exceeded the limit; ``where`` says how it was found (internal)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class BodyDamaged(Exception):
    """The body cannot be decompressed, or is in an encoding we did not ask for (internal)."""


class ByteStream(Protocol):
    """What the body is read from: aiohttp's ``StreamReader`` (``response.content``)."""

    async def readany(self) -> bytes: ...


class _Inflater:
    """Incremental gzip/deflate decompression whose output per call is capped."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._obj: zlib._Decompress | None = (
            zlib.decompressobj(_GZIP_WBITS) if self._gzip else None
        )

    def feed(self, data: bytes, budget: int) -> list[bytes]:
        """Decompress ``data``, producing at most ``budget`` bytes (the rest is dropped:
        the caller gives ``room + 1`` and treats a full budget as over the limit)."""
        out: list[bytes] = []
        while data and budget > 0:
            if self._obj is None:
                # "deflate" should be zlib-wrapped (RFC 9110) but is often raw: sniff it.
                self._obj = zlib.decompressobj(
                    zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
                )
            elif self._obj.eof:
                if not self._gzip:
                    break  # bytes after the deflate stream: ignored, as zlib does
                self._obj = zlib.decompressobj(_GZIP_WBITS)  # the next gzip member
            try:
                chunk = self._obj.decompress(data, min(budget, _STEP))
            except zlib.error as exc:
                raise BodyDamaged(f"damaged compressed body: {exc}") from None
            out.append(chunk)
            budget -= len(chunk)
            data = self._obj.unconsumed_tail or (self._obj.unused_data if self._obj.eof else b"")
        return out

    def finish(self) -> bytes:
        """The last bytes, once the wire is done; a stream cut short is damaged."""
        if self._obj is None:
            return b""
        if not self._obj.eof:
            raise BodyDamaged("the compressed body ended early")
        return self._obj.flush()


async def read_body(
    stream: ByteStream, encoding: str | None, declared: int | None, limit: int
) -> bytes:
    """Read a whole body of at most ``limit`` bytes, decompressed.

    ``encoding`` is the Content-Encoding header, ``declared`` the Content-Length. Raises
    :class:`BodyTooLarge` as soon as the limit is crossed (before reading anything when the
    declared length is over it), :class:`BodyDamaged` for a body that cannot be decoded.
    """
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"Content-Length {declared}")
    encoding = (encoding or "identity").strip().lower()
    inflater: _Inflater | None = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = _Inflater(encoding)
    elif encoding != "identity":
        raise BodyDamaged(f"Content-Encoding {encoding[:40]!r}, which was not asked for")
    parts: list[bytes] = []
    wire = size = 0
    while chunk := await stream.readany():
        wire += len(chunk)
        if wire > limit:
            raise BodyTooLarge(f"more than {limit} bytes sent")
        pieces = [chunk] if inflater is None else inflater.feed(chunk, limit - size + 1)
        size += sum(map(len, pieces))
        if size > limit:
            raise BodyTooLarge(f"more than {limit} bytes once decompressed, from {wire} sent")
        parts += pieces
    if inflater is not None:
        tail = inflater.finish()
        size += len(tail)
        if size > limit:
            raise BodyTooLarge(f"more than {limit} bytes once decompressed, from {wire} sent")
        parts.append(tail)
    return parts[0] if len(parts) == 1 else b"".join(parts)
