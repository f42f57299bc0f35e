"""estimate_details / estimate_ranking: the counts, and equal to what a crawl then spends."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest

import keyapi_async as ka
from keyapi_async.bulk.estimating import estimate_details, estimate_ranking
from keyapi_async.testing import FakeKeyAPI


def test_counts_unique_done_requests_credits_and_time() -> None:
    ids = [str(7_100_000_000_000_000_000 + n) for n in range(95)]
    with_repeats = ids + ids[:30] + ids[:5]
    done = set(ids[:20]) | {"7999999999999999999"}  # done ids need not be in the file
    est = estimate_details(with_repeats, qps=10, done=done, headroom=0)
    assert (est.ids, est.unique, est.done, est.todo) == (130, 95, 20, 75)
    assert est.requests == est.credits == 8  # ceil(75 / 10)
    assert est.seconds == pytest.approx(0.7)  # 8 starts, 100 ms apart, the first at once
    # The default headroom paces 2 % below qps, as the limiter does.
    assert estimate_details(ids, qps=10).seconds == pytest.approx(9 / 9.8)


def test_nothing_to_do_costs_nothing() -> None:
    est = estimate_details(["7100000000000000001"], qps=5, done={"7100000000000000001"})
    assert (est.requests, est.credits, est.seconds) == (0, 0, 0.0)
    assert estimate_details([], qps=5).requests == 0


def test_ranking_is_an_upper_bound_in_pages() -> None:
    est = estimate_ranking(25, qps=2, pages_done=5, headroom=0)
    assert (est.pages, est.done, est.requests, est.credits) == (25, 5, 20, 20)
    assert est.seconds == pytest.approx(9.5)
    assert estimate_ranking(3, qps=2, pages_done=9).requests == 0


@pytest.mark.parametrize("qps", [0, -1, float("inf"), float("nan"), True])
def test_bad_qps_is_refused(qps: float) -> None:
    with pytest.raises(ka.InvalidParameterError):
        estimate_details([], qps=qps)
    with pytest.raises(ka.InvalidParameterError):
        estimate_ranking(1, qps=qps)


class _Id(msgspec.Struct):
    video_id: str | None = None


async def test_the_estimate_is_what_a_resumed_crawl_spends(tmp_path: Path) -> None:
    out = tmp_path / "videos.jsonl"
    async with FakeKeyAPI(known_ratio=0.8) as fake:
        ids = fake.make_ids(137)
        asked = ids + ids[:40]  # repeats
        async with ka.KeyAPIClient("test-key", base_url=fake.url, qps=1000) as client:
            # A first run over part of the ids, as an interrupted crawl would leave it.
            await ka.crawl_video_details(client, ids[:53], ka.JsonlSink(out))
            # What a resumed crawl skips: ids stored in the output, or recorded missing.
            stored = {
                r.video_id for r in msgspec.json.Decoder(_Id).decode_lines(out.read_bytes())
            }
            missing_file = out.with_name(out.name + ".missing.txt")
            recorded = set(missing_file.read_text().split()) if missing_file.exists() else set()
            est = estimate_details(asked, qps=1000, done=stored | recorded)
            before = fake.stats().credits_spent
            requests_before = fake.stats().requests
            report = await ka.crawl_video_details(client, asked, ka.JsonlSink(out))
        assert est.unique == 137 and est.done == 53
        assert est.requests == math.ceil(84 / 10)
        assert fake.stats().requests - requests_before == est.requests
        assert fake.stats().credits_spent - before == est.credits
        assert report.skipped_resumed == est.done
