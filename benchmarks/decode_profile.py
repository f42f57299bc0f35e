"""What each step of the decode's page pass buys, and a target for profilers.

``python -m benchmarks.decode_profile`` times, in CPU time, interleaved and paired as
section 1 does, the ranking and detail pages decoded by:

* ``msgspec untyped`` and ``typed, no normalization`` (the floors);
* ``round two``: normalization in ``__post_init__``, one decoder call per nested text;
* ``page pass``: the page pass (``-99999``, ``region``) with the nested texts still read
  one call per text (``finish_categories``/``finish_product_ids`` over the column);
* ``categories batched``: an experiment, not shipped: instead, all the category texts of
  the page decoded in one call (joined as one JSON array, checked with ``_join_exactly``);
* ``+ categories mapped``: the category decoder mapped over the texts (``_category_lists``:
  one C call per text, no Python frame);
* ``+ ids split``: the SDK as shipped (``decode_response``): product ids in their common
  form split out of the page's texts at once.

``python -m benchmarks.decode_profile --run VARIANT --page PAGE -n N`` only decodes N
times, for a profiler: ``pyinstrument -m benchmarks.decode_profile --run sdk -n 200``, or
``valgrind --tool=callgrind python -m benchmarks.decode_profile --run sdk -n 8`` (run it
with two values of N and subtract: the difference is the decodes alone, without startup).
The intermediate variants reuse the SDK's private helpers: a lab bench, not API.
"""

from __future__ import annotations

import argparse
import gc
import statistics
from collections.abc import Callable
from itertools import repeat
from typing import Any

import msgspec

from keyapi_async import models as m
from keyapi_async.pipeline.decoding import DETAIL_DECODER, RANKING_DECODER, decode_response

from . import round_two_models as r2
from .decode import make_bodies, measure_rounds, paired

_UNTYPED = msgspec.json.Decoder()
_CATEGORY_LISTS = msgspec.json.Decoder(list[list[m.ProductCategory]], strict=False)


def _batched_categories(texts: list[Any]) -> list[Any]:
    joined = m._join_exactly(texts)
    if joined is not None:
        try:
            return _CATEGORY_LISTS.decode(joined[1])
        except msgspec.ValidationError:
            pass
    return list(map(m.finish_categories, texts))


def _page_pass(records: list[Any], categories_by: str) -> None:
    # finish_ranking with the product ids read one text per call.
    rows, width = m._rows(records), m._RANKING.width
    categories = rows[m._RANKING.at["product_category_list"] :: width]
    products = rows[m._RANKING.at["video_products"] :: width]
    found = m._to_clear(records, rows, m._RANKING)
    del rows
    if categories_by == "batched":
        category_lists = _batched_categories(categories)
    elif categories_by == "mapped":
        category_lists = m._category_lists(categories)
    else:
        category_lists = list(map(m.finish_categories, categories))
    product_ids = list(map(m.finish_product_ids, products))
    m._consume(map(setattr, records, repeat("product_category_list"), category_lists))
    m._consume(map(setattr, records, repeat("video_products"), product_ids))
    m._clear(found)


def variants(page: str, body: bytes) -> dict[str, Callable[[], object]]:
    """The decoders compared, for one page."""
    sdk = DETAIL_DECODER if page == "detail" else RANKING_DECODER
    before = r2.DETAIL_DECODER if page == "detail" else r2.RANKING_DECODER
    out: dict[str, Callable[[], object]] = {
        "untyped": lambda: _UNTYPED.decode(body),
        "typed": lambda: sdk.decode(body),
        "round-two": lambda: r2.decode(before, body),
    }
    if page == "ranking":
        out["page-pass"] = lambda: _page_pass(sdk.decode(body).data, "rule")
        out["batched"] = lambda: _page_pass(sdk.decode(body).data, "batched")
        out["mapped"] = lambda: _page_pass(sdk.decode(body).data, "mapped")
    out["sdk"] = lambda: decode_response(sdk, 200, body)  # type: ignore[misc]
    return out


LABELS = {
    "untyped": "msgspec untyped",
    "typed": "typed, no normalization",
    "round-two": "round two (__post_init__)",
    "page-pass": "page pass, nested one by one",
    "batched": "  categories batched (not kept)",
    "mapped": "+ categories mapped",
    "sdk": "+ ids split (the SDK)",
}


def main() -> None:
    """Print the step table, or just decode for a profiler (``--run``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", choices=list(LABELS), help="only decode, N times")
    parser.add_argument("--page", choices=("ranking", "detail"), default="ranking")
    parser.add_argument("-n", type=int, default=100, help="decodes for --run")
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    bodies = make_bodies()
    if args.run:
        fn = variants(args.page, bodies[args.page])[args.run]
        gc.collect()
        gc.freeze()  # as section 1 does: no contender pays for walking the imports
        for _ in range(args.n):
            fn()
        return
    for page, body in bodies.items():
        samples = measure_rounds(variants(page, body), args.rounds, 0.04)
        print(f"\n{page} page ({len(body) // 1024} KiB), CPU time, medians of {args.rounds} rounds")
        for name, values in samples.items():
            ratio, q1, q3 = paired(samples, name, "untyped")
            gain, _, _ = paired(samples, "round-two", name)
            print(
                f"  {LABELS[name]:34} {statistics.median(values) * 1e3:7.2f} ms  "
                f"{ratio:5.2f}x untyped ({q1:.2f}-{q3:.2f})  {gain:5.2f}x round two's speed"
            )


if __name__ == "__main__":
    main()
