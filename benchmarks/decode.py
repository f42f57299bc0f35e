"""Section 1: decoding a 1,000-record page into records, against the usual alternatives.

Bodies come from the fake server's own data generator (keyapi_async.testing.data), so
they carry what the upstream sends: numeric strings, ``-99999`` sentinels, empty regions,
JSON inside strings, 19-digit ids, emoji and right-to-left text. json.loads, orjson and
untyped msgspec only parse (no normalization): they are floors, not equivalents. The
pydantic models do the SDK's whole normalization and are checked equal first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import orjson

from keyapi_async.decoding import DETAIL_DECODER, RANKING_DECODER, RepairLog, decode_response
from keyapi_async.testing.data import RankingQuery, SyntheticData

from . import pydantic_models as pm
from .harness import SectionResult, interleave, medians

TITLE = "1. Decode (1,000-record page)"
RECORDS = 1000
_UNTYPED = msgspec.json.Decoder()


def _envelope(raws: list[msgspec.Raw]) -> bytes:
    # The same shape the fake server (and the upstream) sends.
    return msgspec.json.encode(
        {"code": 0, "message": "success", "data": raws,
         "requestId": "6f1c1d6e-8d4b-4f7e-9a55-0c2d7e0e9b1a"}
    )


def make_bodies(records: int = RECORDS) -> dict[str, bytes]:
    """A detail page and a ranking page of ``records`` realistic records each."""
    data = SyntheticData(seed=0, known_ratio=0.9, ranking_length=records)
    detail = [data.detail_entry(i).raw for i in data.make_ids(records, known=True)]
    # Ranked by sales: the list where JSON-in-string product fields are most common.
    query = RankingQuery("2025-06-02", "US", 2, 1)
    ranking = [e.raw for e in data.ranking_entries(query, 0, records)]
    return {"detail": _envelope(detail), "ranking": _envelope(ranking)}


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value, builtin_types=(datetime,))


def check_equivalent(body: bytes, page: str) -> None:
    """Assert the pydantic models yield exactly the SDK's values (else the race is unfair)."""
    decoder = DETAIL_DECODER if page == "detail" else RANKING_DECODER
    envelope = pm.DetailEnvelope if page == "detail" else pm.RankingEnvelope
    ours = decode_response(decoder, 200, body).records  # type: ignore[misc]
    theirs = envelope.model_validate_json(body).data or []
    a = _builtins(ours)
    b = _builtins([m.model_dump() for m in theirs])
    if a != b:
        diff = next(
            (i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y
        )
        raise AssertionError(f"pydantic twin differs from the SDK on {page} record: {diff}")


def contenders(body: bytes, page: str) -> dict[str, Callable[[], object]]:
    """One decode of ``body`` per contender."""
    decoder = DETAIL_DECODER if page == "detail" else RANKING_DECODER
    envelope = pm.DetailEnvelope if page == "detail" else pm.RankingEnvelope
    return {
        "keyapi_async models": lambda: decode_response(decoder, 200, body),  # type: ignore[misc]
        "msgspec untyped": lambda: _UNTYPED.decode(body),
        "orjson -> dicts": lambda: orjson.loads(body),
        "json.loads -> dicts": lambda: json.loads(body),
        "pydantic v2 model_validate_json": lambda: envelope.model_validate_json(body),
    }


def odd_body(body: bytes) -> bytes:
    """``body`` with one schema-valid but odd value (height " 1024") in its middle record:
    the fast decode refuses it, and the fallback reads the answer record by record."""
    start = body.index(b'"height":', len(body) // 2)
    end = body.index(b",", start)
    return body[:start] + b'"height":" 1024"' + body[end:]


def _timer(fn: Callable[[], object], budget: float) -> Callable[[], dict[str, float]]:
    """A measurement: run ``fn`` enough times to fill ~``budget`` s, report s per call."""
    start = time.perf_counter()
    fn()
    single = max(time.perf_counter() - start, 1e-6)
    reps = max(1, int(budget / single))

    def measure() -> dict[str, float]:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return {"seconds": (time.perf_counter() - t0) / reps}

    return measure


def run(quick: bool) -> SectionResult:
    """Measure every contender on both pages, interleaved; judge the SDK's ratios."""
    result = SectionResult(TITLE)
    rounds, budget = (3, 0.02) if quick else (11, 0.15)
    bodies = make_bodies()
    for page, body in bodies.items():
        check_equivalent(body, page)
        timers = {name: _timer(fn, budget) for name, fn in contenders(body, page).items()}
        samples = interleave(timers, rounds)
        med = medians(samples)
        result.raw[page] = {"body_bytes": len(body), "seconds": samples}
        ours = med["keyapi_async models"]["seconds"]
        for name, metrics in med.items():
            result.add(f"{page}: {name}", RECORDS / metrics["seconds"], "records/s")
        vs_pydantic = med["pydantic v2 model_validate_json"]["seconds"] / ours
        vs_untyped = ours / med["msgspec untyped"]["seconds"]
        result.add(
            f"{page}: speed vs pydantic v2", vs_pydantic, "x", target=">= 3x",
            ok=vs_pydantic >= 3.0,
        )
        result.add(
            f"{page}: time vs msgspec untyped", vs_untyped, "x", target="<= 1.3x",
            ok=vs_untyped <= 1.3,
        )
    # The fallback's price, paid only by an answer the fast decode refuses.
    odd = odd_body(bodies["detail"])
    repairs = RepairLog()
    decoded = decode_response(DETAIL_DECODER, 200, odd, repairs=repairs)
    assert len(decoded.records) == RECORDS and repairs.counts == {"VideoDetail.height": 1}
    timers = {
        "fast": _timer(lambda: decode_response(DETAIL_DECODER, 200, bodies["detail"]), budget),
        "fallback": _timer(lambda: decode_response(DETAIL_DECODER, 200, odd, repairs=repairs),
                           budget),
    }
    med = medians(interleave(timers, rounds))
    fallback = med["fallback"]["seconds"]
    result.add("detail: one odd value (fallback path)", RECORDS / fallback, "records/s")
    result.add("detail: fallback time vs fast path", fallback / med["fast"]["seconds"], "x")
    result.notes.append(
        f"medians of {rounds} interleaved rounds; bodies "
        + ", ".join(f"{p} {len(b) / 1024:.0f} KiB" for p, b in bodies.items())
        + "; pydantic twin checked equal to the SDK's records before timing"
    )
    return result
