"""Progress display and summary: plain lines off a TTY, a bar on one, the summary table."""

from __future__ import annotations

import io

import keyapi_async as ka
from keyapi_async.bulk.progress import make_progress, status_line, summary_table


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _report() -> ka.CrawlReport:
    return ka.CrawlReport(requested=100, fetched=40, missing=5, failed={"7": "ServerError: x"},
                          credits_spent=5, rate_limited=2, elapsed=2.0)


def test_status_line_has_done_rate_credits_errors_eta() -> None:
    line = status_line(_report(), 200)
    assert line.startswith("46/200 ids (23%)")
    for part in ("23 ids/s", "credits 5", "failed 1", "429s 2", "ETA 00:07"):
        assert part in line


def test_off_a_tty_plain_lines_at_interval_and_at_finish() -> None:
    stream = io.StringIO()
    progress = make_progress(200, stream=stream, interval=3600)
    progress(_report())  # within the interval: nothing yet
    assert stream.getvalue() == ""
    progress.finish(_report())
    assert stream.getvalue().count("\n") == 1 and "progress: 46/200" in stream.getvalue()


def test_on_a_tty_a_live_bar() -> None:
    stream = FakeTTY()
    progress = make_progress(200, stream=stream)
    progress(_report())
    progress.finish(_report())
    assert "46/200" in stream.getvalue() and "credits 5" in stream.getvalue()


def test_summary_table_lists_every_bucket_and_failures() -> None:
    text = summary_table(_report())
    assert text.startswith("crawl summary: INCOMPLETE")
    for label in ("ids requested (unique)", "fetched", "missing", "failed", "not attempted",
                  "requests sent", "credits spent", "retries", "429 answers", "elapsed"):
        assert label in text
    assert "failed 7: ServerError: x" in text
