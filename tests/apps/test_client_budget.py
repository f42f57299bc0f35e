"""max_credits through the real client: never one credit over what the server charged,
under concurrency, retries and faults; the call halts with CreditBudgetExceededError; a
crawl accounts for the rest as not attempted; the estimate is what a crawl then spends."""

from __future__ import annotations

import asyncio
import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
from keyapi_async.cli import main
from keyapi_async.testing import FakeKeyAPI, Faults

FAST = ka.RetryPolicy(base_delay=0.001, max_delay=0.005)


def client(fake: FakeKeyAPI, **kwargs: Any) -> ka.KeyAPIClient:
    kwargs.setdefault("qps", 1000)
    kwargs.setdefault("retry_policy", FAST)
    return ka.KeyAPIClient("test-key", base_url=fake.url, **kwargs)


async def test_the_last_credit_is_spent_and_not_one_more() -> None:
    async with FakeKeyAPI(latency=0.01) as fake:
        ids = fake.make_ids(100)
        async with client(fake, max_credits=3) as api:
            with pytest.raises(ka.CreditBudgetExceededError) as caught:
                await api.video_details(ids)
            assert fake.stats().credits_spent == 3 == len(fake.requests)
            assert (caught.value.max_credits, caught.value.spent) == (3, 3)
            assert api.credits_remaining == 0 and api.max_credits == 3
            # Refused at once from now on, before any request.
            with pytest.raises(ka.CreditBudgetExceededError):
                await api.video_detail(ids[0])
            with pytest.raises(ka.CreditBudgetExceededError):
                await api.video_ranking(
                    date="2025-01-06", region="US", video_rank_field=1, rank_type=2
                )
        assert len(fake.requests) == 3


@pytest.mark.parametrize("coalesce", [True, False])
@pytest.mark.parametrize("seed", range(3))
async def test_never_one_credit_over_under_concurrency_retries_and_faults(
    seed: int, coalesce: bool
) -> None:
    faults = Faults(http_5xx=0.15, body_429=0.1, reset=0.05, truncated=0.05, html_502=0.05)
    async with FakeKeyAPI(latency=0.01, jitter=0.01, faults=faults, seed=seed) as fake:
        ids = fake.make_ids(300)
        budget = 12
        async with client(fake, max_credits=budget, coalesce=coalesce) as api:
            calls = [api.video_details(ids[n : n + 7]) for n in range(0, 300, 7)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            stats = api.stats
        charged = fake.stats().credits_spent
        # The server never charged more than the budget; the client's count is exact
        # where the charge is known, and counts the unknown ones against the budget.
        assert charged <= budget
        assert stats.credits_spent + stats.credits_unknown == budget
        assert stats.credits_spent <= charged <= stats.credits_spent + stats.credits_unknown
        assert any(isinstance(r, ka.CreditBudgetExceededError) for r in results)
        assert stats.retries > 0 or stats.rate_limited > 0  # the faults did cost attempts


async def test_a_crawl_stops_at_the_budget_and_accounts_for_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "videos.jsonl"
    async with FakeKeyAPI(latency=0.005, faults=Faults(http_5xx=0.2), seed=3) as fake:
        ids = fake.make_ids(200)
        async with client(fake, max_credits=9) as api:
            with pytest.raises(ka.CreditBudgetExceededError) as caught:
                await ka.crawl_video_details(api, ids, ka.JsonlSink(out))
            report: ka.CrawlReport = caught.value.report  # type: ignore[attr-defined]
        assert fake.stats().credits_spent <= 9
        assert report.accounted == report.requested == 200
        assert report.not_attempted > 0 and report.fetched + report.missing > 0
        assert "CreditBudgetExceededError" in (report.aborted or "")
        # A resumed crawl with a new budget finishes the job and pays for the rest only.
        async with client(fake) as api:
            rest = await ka.crawl_video_details(api, ids, ka.JsonlSink(out))
        assert rest.ok and rest.skipped_resumed == report.fetched + report.missing


async def test_the_estimate_is_what_the_crawl_then_spends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids_file, out = tmp_path / "ids.txt", tmp_path / "videos.jsonl"
    async with FakeKeyAPI(known_ratio=0.8) as fake:
        ids = fake.make_ids(137)
        ids_file.write_text("\n".join(ids + ids[:40]) + "\n")  # with repeats
        async with client(fake) as api:  # an interrupted first run: part of the ids done
            await ka.crawl_video_details(api, ids[:53], ka.JsonlSink(out))
        before = fake.stats()
        capsys.readouterr()
        assert main(["estimate", str(ids_file), "-o", str(out), "--qps", "1000"]) == 0
        printed = dict(
            (line[:14].strip(), line[14:].split()[0].replace(",", ""))
            for line in capsys.readouterr().out.splitlines()
        )
        assert len(fake.requests) == before.requests  # the estimate sent nothing
        async with client(fake) as api:
            report = await ka.crawl_video_details(api, ids + ids[:40], ka.JsonlSink(out))
        after = fake.stats()
    assert printed["unique ids"] == "137" and printed["already done"] == "53"
    assert int(printed["requests"]) == after.requests - before.requests == 9
    assert int(printed["credits"]) == after.credits_spent - before.credits_spent
    assert report.skipped_resumed == 53


def test_the_cli_stops_at_max_credits_and_resumes(tmp_path: Path) -> None:
    ids_file, out = tmp_path / "ids.txt", tmp_path / "videos.jsonl"

    async def run() -> tuple[int, int, int, int]:
        async with FakeKeyAPI() as fake:
            ids_file.write_text("\n".join(fake.make_ids(55)) + "\n")
            args = ["videos", str(ids_file), "-o", str(out), "--base-url", fake.url,
                    "--api-key", "test-key", "--qps", "1000"]
            loop = asyncio.get_running_loop()
            with redirect_stdout(io.StringIO()):
                # main() runs its own event loop: in a thread, beside the server's.
                stopped = await loop.run_in_executor(None, main, [*args, "--max-credits", "2"])
                charged = fake.stats().credits_spent
                resumed = await loop.run_in_executor(None, main, args)
            return stopped, resumed, charged, fake.stats().credits_spent

    stopped, resumed, charged, total = asyncio.run(run())
    assert stopped == 2 and charged == 2  # aborted, resumable
    assert resumed == 0
    assert total == 6  # the resumed run paid for the 4 requests left, not again for 2
