"""Fault injection: which faults exist, when they fire, and how they damage bodies."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields
from typing import Any, TypeAlias

import msgspec

#: A fault fires either with a probability (a rate in [0, 1]) or on the listed
#: 1-based request numbers (counted over all requests to the API endpoints).
FaultSpec: TypeAlias = float | AbstractSet[int]

#: Faults chosen per request, in the order they are tried; the first that
#: fires wins, so at most one of them is injected into any answer.
RANDOM_FAULTS: tuple[str, ...] = (
    "reset",
    "http_5xx",
    "html_502",
    "body_429",
    "body_500",
    "slow",
    "truncated",
    "control_chars",
    "real_arrays",
)

#: Faults that still deliver a code-0 answer (damaged or late) and so cost a credit.
CHARGED_FAULTS = frozenset({"truncated", "control_chars", "real_arrays", "slow"})

#: What nginx sends when the upstream is gone: not JSON at all.
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

#: Raw bytes that are illegal inside a strict JSON string.
CONTROL_CHARS = "\x01\x1f\n\t"

# Placeholder put into text fields before encoding and swapped for raw control
# characters afterwards, because msgspec would escape them if encoded directly.
_CONTROL_MARK = "\ue000KEYAPI-CTRL\ue000"
_TEXT_FIELDS = ("video_desc", "nick_name")


@dataclass
class Faults:
    """Faults the fake server injects into answers that would otherwise succeed.

    Each fault field is a rate in [0, 1] or a set of 1-based request numbers.
    ``fail_first`` makes the first N attempts of every distinct query (same
    path and params) fail with ``fail_first_status``; ``revoke_after`` revokes
    a key after N successful answers.  ``http_5xx`` answers with
    ``status_5xx`` (500, 502 or 503); ``slow`` answers after ``slow_seconds``.
    """

    http_5xx: FaultSpec = 0.0
    status_5xx: int = 500
    body_429: FaultSpec = 0.0
    body_500: FaultSpec = 0.0
    html_502: FaultSpec = 0.0
    reset: FaultSpec = 0.0
    truncated: FaultSpec = 0.0
    control_chars: FaultSpec = 0.0
    real_arrays: FaultSpec = 0.0
    slow: FaultSpec = 0.0
    slow_seconds: float = 30.0
    fail_first: int = 0
    fail_first_status: int = 500
    revoke_after: int | None = None

    def __post_init__(self) -> None:
        for name in RANDOM_FAULTS:
            spec = getattr(self, name)
            if isinstance(spec, AbstractSet):
                if any(not isinstance(n, int) or n < 1 for n in spec):
                    raise ValueError(f"{name}: schedule must hold 1-based request numbers")
            elif not 0.0 <= spec <= 1.0:
                raise ValueError(f"{name}: rate must be in [0, 1], got {spec!r}")
        if self.status_5xx not in (500, 502, 503):
            raise ValueError("status_5xx must be 500, 502 or 503")
        if self.fail_first < 0:
            raise ValueError("fail_first must not be negative")
        if self.revoke_after is not None and self.revoke_after < 1:
            raise ValueError("revoke_after must be at least 1")
        if self.slow_seconds < 0:
            raise ValueError("slow_seconds must not be negative")


def fault_field_types() -> dict[str, type]:
    """Map every ``Faults`` field to the scalar type a command line value converts to."""
    types: dict[str, type] = {}
    for f in fields(Faults):
        if f.name in RANDOM_FAULTS or f.name == "slow_seconds":
            types[f.name] = float
        else:
            types[f.name] = int
    return types


class FaultPicker:
    """Chooses the fault for each request, reproducibly from a seed.

    One picker lives as long as one ``Faults`` value: replacing the faults
    starts over (fresh random stream, fresh ``fail_first`` attempt counts).
    """

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(f"faults:{seed}")
        self._attempts: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}

    def pick(self, number: int, path: str, params: Mapping[str, str]) -> str | None:
        """Return the fault to inject into request ``number``, or None."""
        faults = self.faults
        if faults.fail_first:
            query = (path, tuple(sorted(params.items())))
            attempts = self._attempts.get(query, 0) + 1
            self._attempts[query] = attempts
            if attempts <= faults.fail_first:
                return "fail_first"
        for name in RANDOM_FAULTS:
            spec: FaultSpec = getattr(faults, name)
            if isinstance(spec, AbstractSet):
                if number in spec:
                    return name
            elif spec > 0.0 and self._rng.random() < spec:
                return name
        return None


def truncate(body: bytes) -> bytes:
    """Cut an encoded body in the middle so it is no longer valid JSON."""
    return body[: max(1, len(body) // 2)]


def with_control_chars(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copy ``records`` with a placeholder in their text fields (see ``inject_control_chars``)."""
    damaged: list[dict[str, Any]] = []
    for record in records:
        copy = dict(record)
        for name in _TEXT_FIELDS:
            text = copy.get(name)
            if isinstance(text, str):
                middle = len(text) // 2
                copy[name] = text[:middle] + _CONTROL_MARK + text[middle:]
        damaged.append(copy)
    return damaged


def inject_control_chars(body: bytes) -> bytes:
    """Replace the placeholders in an encoded body with raw control characters."""
    return body.replace(_CONTROL_MARK.encode(), CONTROL_CHARS.encode())


def with_real_arrays(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copy ``records`` with the JSON-in-a-string fields sent as real JSON arrays.

    ``video_products`` then holds bare 19-digit numbers, which lose precision
    in any decoder that reads JSON numbers as doubles.
    """
    damaged: list[dict[str, Any]] = []
    for record in records:
        copy = dict(record)
        for name in ("product_category_list", "video_products"):
            value = copy.get(name)
            if isinstance(value, str):
                copy[name] = msgspec.json.decode(value)
        damaged.append(copy)
    return damaged
