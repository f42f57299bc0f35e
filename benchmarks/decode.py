"""Section 1: decoding a 1,000-record page into records, against the usual alternatives.

Bodies come from the fake server's own data generator (keyapi_async.testing.data), so
they carry what the upstream sends: numeric strings, ``-99999`` sentinels, empty regions,
JSON inside strings, 19-digit ids, emoji and right-to-left text. json.loads, orjson and
untyped msgspec only parse (no normalization): they are floors, not equivalents. The
pydantic models and round two's models (``round_two_models``: the normalization in
``__post_init__``, what the page pass replaced) do the SDK's whole normalization and are
checked equal first.

Trustworthy ratios on a shared, loaded machine: every contender is timed in CPU time of
this thread (``time.thread_time``: time spent descheduled by other processes' load does not
count), in short measurements, in rounds whose order is shuffled; a ratio is the median,
over rounds, of the ratio within a round (both sides saw the same load), with its
interquartile range in the row's note. The garbage collector's startup heap is frozen
(``gc.freeze``) so no contender pays for walking the benchmark's own imports.
"""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec
import orjson

from keyapi_async.pipeline.decoding import (
    DETAIL_DECODER,
    RANKING_DECODER,
    RepairLog,
    decode_response,
)
from keyapi_async.testing.data import RankingQuery, SyntheticData

from . import pydantic_models as pm
from . import round_two_models as r2
from .harness import SectionResult

TITLE = "1. Decode (1,000-record page)"
RECORDS = 1000
_UNTYPED = msgspec.json.Decoder()
OURS = "keyapi_async models"
BEFORE = "round-two models (__post_init__)"
UNTYPED = "msgspec untyped"
PYDANTIC = "pydantic v2 model_validate_json"
#: The issue's targets: (time vs msgspec untyped at most, speed vs pydantic v2 at least).
TARGETS = {"detail": (1.1, 3.0), "ranking": (1.3, 3.0)}


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
    """Assert the pydantic models and round two's models yield exactly the SDK's values
    (else the race is unfair)."""
    decoder = DETAIL_DECODER if page == "detail" else RANKING_DECODER
    envelope = pm.DetailEnvelope if page == "detail" else pm.RankingEnvelope
    ours = _builtins(decode_response(decoder, 200, body).records)  # type: ignore[misc]
    theirs = {
        "pydantic": _builtins(
            [m.model_dump() for m in envelope.model_validate_json(body).data or []]
        ),
        "round two": _builtins(r2.decode(_round_two_decoder(page), body)),
    }
    for name, values in theirs.items():
        if values != ours:
            diff = next(
                (i, x, y) for i, (x, y) in enumerate(zip(ours, values, strict=True)) if x != y
            )
            raise AssertionError(f"{name} twin differs from the SDK on {page} record: {diff}")


def _round_two_decoder(page: str) -> Any:
    return r2.DETAIL_DECODER if page == "detail" else r2.RANKING_DECODER


def contenders(body: bytes, page: str) -> dict[str, Callable[[], object]]:
    """One decode of ``body`` per contender."""
    decoder = DETAIL_DECODER if page == "detail" else RANKING_DECODER
    envelope = pm.DetailEnvelope if page == "detail" else pm.RankingEnvelope
    before = _round_two_decoder(page)
    return {
        OURS: lambda: decode_response(decoder, 200, body),  # type: ignore[misc]
        BEFORE: lambda: r2.decode(before, body),
        UNTYPED: lambda: _UNTYPED.decode(body),
        "orjson -> dicts": lambda: orjson.loads(body),
        "json.loads -> dicts": lambda: json.loads(body),
        PYDANTIC: lambda: envelope.model_validate_json(body),
    }


def odd_body(body: bytes) -> bytes:
    """``body`` with one schema-valid but odd value (height " 1024") in its middle record:
    the fast decode refuses it, and the fallback reads the answer record by record."""
    start = body.index(b'"height":', len(body) // 2)
    end = body.index(b",", start)
    return body[:start] + b'"height":" 1024"' + body[end:]


def _timer(fn: Callable[[], object], budget: float) -> Callable[[], float]:
    """A measurement: run ``fn`` enough times to fill ~``budget`` s of CPU, report CPU s
    per call (this thread's: time spent waiting for a core does not count)."""
    start = time.thread_time()
    fn()
    single = max(time.thread_time() - start, 1e-6)
    reps = max(1, int(budget / single))

    def measure() -> float:
        t0 = time.thread_time()
        for _ in range(reps):
            fn()
        return (time.thread_time() - t0) / reps

    return measure


def measure_rounds(
    contenders: Mapping[str, Callable[[], object]], rounds: int, budget: float, seed: int = 0
) -> dict[str, list[float]]:
    """CPU seconds per call of each contender, one measurement per round, in an order
    shuffled every round (a seeded shuffle: the same order sequence on every run)."""
    timers = {name: _timer(fn, budget) for name, fn in contenders.items()}
    order = list(timers)
    shuffle = random.Random(seed).shuffle
    out: dict[str, list[float]] = {name: [] for name in timers}
    gc.collect()
    gc.freeze()
    try:
        for _ in range(rounds):
            shuffle(order)
            for name in order:
                out[name].append(timers[name]())
    finally:
        gc.unfreeze()
    return out


def paired(samples: dict[str, list[float]], a: str, b: str) -> tuple[float, float, float]:
    """Median and interquartile range, over rounds, of ``a``'s time over ``b``'s."""
    ratios = [x / y for x, y in zip(samples[a], samples[b], strict=True)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return q2, q1, q3


def _spread(q1: float, q3: float) -> str:
    return f"interquartile {q1:.3f}-{q3:.3f} over the rounds"


def run(quick: bool) -> SectionResult:
    """Measure every contender on both pages, interleaved; judge the SDK's ratios."""
    result = SectionResult(TITLE)
    rounds, budget = (3, 0.01) if quick else (41, 0.04)
    bodies = make_bodies()
    load = os.getloadavg()[0]
    for page, body in bodies.items():
        check_equivalent(body, page)
        samples = measure_rounds(contenders(body, page), rounds, budget)
        result.raw[page] = {"body_bytes": len(body), "cpu_seconds": samples}
        for name, values in samples.items():
            result.add(f"{page}: {name}", RECORDS / statistics.median(values), "records/s")
        max_untyped, min_pydantic = TARGETS[page]
        vs_untyped, q1, q3 = paired(samples, OURS, UNTYPED)
        result.add(
            f"{page}: time vs msgspec untyped", vs_untyped, "x", target=f"<= {max_untyped}x",
            ok=vs_untyped <= max_untyped, note=_spread(q1, q3),
        )
        before, q1, q3 = paired(samples, BEFORE, UNTYPED)
        result.add(
            f"{page}: round two's time vs msgspec untyped", before, "x", note=_spread(q1, q3)
        )
        gained, q1, q3 = paired(samples, BEFORE, OURS)
        result.add(f"{page}: speed vs round two's models", gained, "x", note=_spread(q1, q3))
        vs_pydantic, q1, q3 = paired(samples, PYDANTIC, OURS)
        result.add(
            f"{page}: speed vs pydantic v2", vs_pydantic, "x", target=f">= {min_pydantic:g}x",
            ok=vs_pydantic >= min_pydantic, note=_spread(q1, q3),
        )
    # The fallback's price, paid only by an answer the fast decode refuses.
    odd = odd_body(bodies["detail"])
    repairs = RepairLog()
    decoded = decode_response(DETAIL_DECODER, 200, odd, repairs=repairs)
    assert len(decoded.records) == RECORDS and repairs.counts == {"VideoDetail.height": 1}
    samples = measure_rounds(
        {
            "fast": lambda: decode_response(DETAIL_DECODER, 200, bodies["detail"]),
            "fallback": lambda: decode_response(DETAIL_DECODER, 200, odd, repairs=repairs),
        },
        rounds,
        budget,
    )
    slower, q1, q3 = paired(samples, "fallback", "fast")
    fallback = statistics.median(samples["fallback"])
    result.add("detail: one odd value (fallback path)", RECORDS / fallback, "records/s")
    result.add("detail: fallback time vs fast path", slower, "x", note=_spread(q1, q3))
    result.notes.append(
        f"CPU time (time.thread_time), medians of {rounds} rounds in shuffled order, ratios "
        "paired within each round; bodies "
        + ", ".join(f"{p} {len(b) / 1024:.0f} KiB" for p, b in bodies.items())
        + f"; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        + "; pydantic and round-two twins checked equal to the SDK's records before timing"
    )
    return result
