"""Packing video ids into requests: validate, drop duplicates, 10 ids a batch, lazily.

A collection (list, tuple, set, ...) is validated whole before the first batch is made,
so one bad id anywhere refuses the call before any credit is spent. An iterator or async
iterator is pulled lazily (a million-id generator is never materialized): each batch is
validated whole before it is handed on.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterable, Collection, Iterable

from .errors import InvalidParameterError
from .validation import video_id

__all__ = ["MAX_IDS_PER_REQUEST", "IdSource", "id_batches", "list_batches", "unique_ids"]

#: The API's limit of ids in one detail request.
MAX_IDS_PER_REQUEST = 10

#: What the id-taking methods accept.
IdSource = Iterable[str | int] | AsyncIterable[str | int]


def _refuse_scalar(ids: object) -> None:
    # A bare string is iterable: "7117..." would become 19 one-digit ids and 2 wasted credits.
    if isinstance(ids, (str, bytes, int)):
        raise InvalidParameterError(
            f"expected an iterable of video ids, got a single {type(ids).__name__}; "
            "wrap it in a list: [video_id]"
        )
    if not isinstance(ids, (Iterable, AsyncIterable)):
        raise InvalidParameterError(
            f"expected an iterable of video ids, got {type(ids).__name__}"
        )


# Comma-joined valid ids: 1 to 20 ASCII digits each, not all zeros (see video_id).
_ID_LIST = re.compile(r"(?:(?!0*,)[0-9]{1,20},)*(?!0*\Z)[0-9]{1,20}")


def unique_ids(ids: Iterable[object]) -> list[str]:
    """Validate every id and return them once each, in first-seen order."""
    _refuse_scalar(ids)
    if isinstance(ids, (list, tuple)):
        # The common case, strings: drop repeats, then one regular expression over them
        # joined (a comma inside an id would add one), instead of a call per id.
        try:
            unique = list(dict.fromkeys(ids))
            joined = ",".join(unique)
        except TypeError:  # an int (or anything else): the general path below
            pass
        else:
            if joined.count(",") == len(unique) - 1 and _ID_LIST.fullmatch(joined):
                return unique
    # dict keeps insertion order: an ordered set. A bad id raises with its position.
    return list(dict.fromkeys(video_id(v, i) for i, v in enumerate(ids)))


async def list_batches(
    ids: list[str], size: int = MAX_IDS_PER_REQUEST
) -> AsyncGenerator[list[str], None]:
    """Yield ``ids`` (already valid and unique) in lists of at most ``size``."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


async def id_batches(
    ids: IdSource, *, size: int = MAX_IDS_PER_REQUEST, dedupe: bool = True,
    held: list[str] | None = None,
) -> AsyncGenerator[list[str], None]:
    """Yield lists of at most ``size`` valid ids, each unique id once (when ``dedupe``).

    ``held``: when the generator ends early (closed, cancelled while it waits for the
    source, or the source raised), the ids it had taken but not yet yielded are added
    to it, so that a caller can account for every id taken from the source.
    """
    _refuse_scalar(ids)
    if isinstance(ids, Collection):
        everything = unique_ids(ids) if dedupe else [video_id(v, i) for i, v in enumerate(ids)]
        async for chunk in list_batches(everything, size):
            yield chunk
        return

    seen: set[str] = set()
    batch: list[str] = []
    position = 0

    def take(value: object) -> None:
        nonlocal position
        vid = video_id(value, position)
        position += 1
        if dedupe:
            if vid in seen:
                return
            seen.add(vid)
        batch.append(vid)

    try:
        if isinstance(ids, AsyncIterable):
            async for value in ids:
                take(value)
                if len(batch) == size:
                    out, batch = batch, []  # emptied first: a yielded batch is not held
                    yield out
        else:
            for value in ids:
                take(value)
                if len(batch) == size:
                    out, batch = batch, []
                    yield out
        if batch:
            out, batch = batch, []
            yield out
    except BaseException:
        if held is not None:
            held.extend(batch)
        raise
