"""Showing a crawl's progress: a live bar on a terminal, periodic log lines elsewhere.

On a TTY the bar is drawn by rich when it is installed (the optional ``cli`` extra) and
by a plain carriage-return line otherwise. Off a TTY (a log file, CI) one line is written
every ``interval`` seconds. :func:`summary_table` renders the final report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from .report import CrawlReport

__all__ = [
    "Progress", "ScanProgress", "make_progress", "status_line", "stopped_note", "summary_table",
]


class Progress(Protocol):
    """A crawl's ``on_progress`` callback plus a final ``finish``."""

    def __call__(self, report: CrawlReport) -> None:
        """Show the live report."""

    def finish(self, report: CrawlReport) -> None:
        """Show the last state and release the display."""


def _rate_eta(report: CrawlReport, total: int | None) -> tuple[float, float | None]:
    done_here = report.accounted - report.skipped_resumed
    rate = done_here / report.elapsed if report.elapsed > 0 else 0.0
    if total is None or rate <= 0:
        return rate, None
    return rate, max(0.0, total - report.accounted) / rate


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    clock = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"{hours}:{clock}" if hours else clock


def _done(report: CrawlReport) -> int:
    """Ids with an outcome other than "not attempted": a stopped crawl's bar stays where
    it stopped instead of jumping to 100 % when the ids left over are counted."""
    return report.accounted - report.not_attempted


def stopped_note(report: CrawlReport) -> str:
    """Why a crawl stopped early, for the last progress line ("" when it did not)."""
    if report.aborted is None:
        return ""
    reason = "interrupted" if report.aborted == "interrupted" else "aborted"
    note = f"STOPPED ({reason})"
    if report.not_attempted:
        note += f", {report.not_attempted:,} not attempted"
    if report.in_flight:
        note += f", {report.in_flight:,} requests in flight when stopped (may be charged)"
    return note


def status_line(report: CrawlReport, total: int | None, unit: str = "ids") -> str:
    """One line: done/total, rate, credits, errors, ETA; or, once stopped early, why."""
    rate, eta = _rate_eta(report, total)
    done = _done(report)
    of = f"/{total:,}" if total is not None else ""
    percent = f" ({100 * done / total:.0f}%)" if total else ""
    end = stopped_note(report) or f"ETA {_duration(eta)}"
    return (
        f"{done:,}{of} {unit}{percent} | {rate:,.0f} {unit}/s | "
        f"credits {report.credits_spent:,} | failed {len(report.failed):,} | "
        f"429s {report.rate_limited:,} | {end}"
    )


class _LogLines:
    """Off a TTY: a plain line every ``interval`` seconds, and one at the end."""

    def __init__(self, total: int | None, stream: TextIO, interval: float, unit: str) -> None:
        self.total, self.stream, self.interval, self.unit = total, stream, interval, unit
        self._last = time.monotonic()
        self._written = ""

    def _write(self, report: CrawlReport) -> None:
        line = f"progress: {status_line(report, self.total, self.unit)}\n"
        if line != self._written:  # the last periodic line may already be the final one
            self._written = line
            self.stream.write(line)
            self.stream.flush()

    def __call__(self, report: CrawlReport) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write(report)

    def finish(self, report: CrawlReport) -> None:
        self._write(report)


class _CarriageReturn:
    """On a TTY without rich: one line redrawn in place, ten times a second at most."""

    def __init__(self, total: int | None, stream: TextIO, unit: str) -> None:
        self.total, self.stream, self.unit = total, stream, unit
        self._last = 0.0
        self._width = 0

    def _draw(self, report: CrawlReport) -> None:
        text = status_line(report, self.total, self.unit)
        if self.total:
            filled = min(20, 20 * _done(report) // self.total)
            text = f"[{'#' * filled}{'.' * (20 - filled)}] {text}"
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write(f"\r{text}{' ' * pad}")
        self.stream.flush()

    def __call__(self, report: CrawlReport) -> None:
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self._draw(report)

    def finish(self, report: CrawlReport) -> None:
        self._draw(report)
        self.stream.write("\n")
        self.stream.flush()


class _RichBar:
    """On a TTY with rich: a live bar with done/total, rate, credits, errors and ETA."""

    def __init__(self, total: int | None, stream: TextIO, unit: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.unit = unit
        self._bar = RichProgress(
            BarColumn(bar_width=10),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._task = self._bar.add_task("crawl", total=total, info="")
        self._bar.start()

    def __call__(self, report: CrawlReport) -> None:
        rate = (report.accounted - report.skipped_resumed) / report.elapsed if report.elapsed else 0
        # Kept short: with the labelled clocks the line fits 80 columns.
        info = (
            f"{rate:,.0f} {self.unit}/s credits {report.credits_spent:,} "
            f"failed {len(report.failed):,} 429s {report.rate_limited:,}"
        )
        self._bar.update(self._task, completed=_done(report), info=info)

    def finish(self, report: CrawlReport) -> None:
        self(report)
        self._bar.refresh()
        self._bar.stop()
        note = stopped_note(report)
        if note:
            self._bar.console.print(note, style="bold red", highlight=False)


def make_progress(
    total: int | None,
    *,
    stream: TextIO | None = None,
    interval: float = 5.0,
    unit: str = "ids",
) -> Progress:
    """The right display for ``stream`` (stderr by default): bar on a TTY, lines otherwise."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return _LogLines(total, stream, interval, unit)
    try:
        return _RichBar(total, stream, unit)
    except ImportError:
        return _CarriageReturn(total, stream, unit)


class ScanProgress:
    """Progress of a pass over the input before the crawl (checking a large ids file).

    A ``check_ids_file`` ``on_progress`` callback. Quiet for the first ``delay`` seconds,
    so a small file prints nothing; then, on a terminal, one line redrawn in place five
    times a second at most, elsewhere a line every ``interval`` seconds.
    """

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        interval: float = 5.0,
        delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else interval
        self.clock = clock
        self._start = clock()
        self._next = self._start + delay
        self._last: tuple[int, int | None, int | None] = (0, None, None)
        #: Whether anything was written (so ``finish`` knows to write the last state).
        self.shown = False

    def __call__(self, entries: int, done: int | None, total: int | None) -> None:
        self._last = (entries, done, total)
        now = self.clock()
        if now >= self._next:
            self._next = now + self.interval
            self._show(now, end="" if self.tty else "\n")

    def _show(self, now: float, end: str) -> None:
        entries, done, total = self._last
        text = f"checking {self.label}: {entries:,} ids"
        if done is not None and total:
            text += f", {done / 2**20:,.0f}/{total / 2**20:,.0f} MiB ({100 * done / total:.0f}%)"
        text += f", {_duration(now - self._start)}"
        self.stream.write(f"\r{text}{end}" if self.tty else f"{text}{end}")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        """Write the last state, if anything was shown (a small file shows nothing)."""
        if self.shown:
            self._show(self.clock(), end="\n")


def _summary_rows(report: CrawlReport, ranking: bool) -> list[tuple[str, str]]:
    rows: list[tuple[str, Any]] = []
    if ranking:
        rows += [
            ("records stored", report.fetched),
            ("already stored (resumed)", report.skipped_resumed),
            ("pages stored", report.pages),
            ("list complete", "yes" if report.complete else "no"),
        ]
    else:
        rows += [
            ("ids requested (unique)", report.requested),
            ("already done (resumed)", report.skipped_resumed),
            ("fetched", report.fetched),
            ("missing (unknown to the API)", report.missing),
            ("failed", len(report.failed)),
            ("not attempted", report.not_attempted),
        ]
    rows += [
        ("requests sent", report.requests),
        ("credits spent", report.credits_spent),
        ("retries", report.retries),
        ("429 answers", report.rate_limited),
        ("elapsed", f"{report.elapsed:.1f} s"),
    ]
    if report.output:
        rows.append(("output", report.output))
    if report.in_flight:
        rows.append(("in flight when stopped", f"{report.in_flight:,} requests, may be charged"))
    if report.aborted:
        rows.append(("stopped early", report.aborted))
    return [(k, f"{v:,}" if isinstance(v, int) else str(v)) for k, v in rows]


def summary_table(report: CrawlReport, *, ranking: bool = False, max_failed: int = 5) -> str:
    """A plain-text table of the report (and the first few failure reasons)."""
    rows = _summary_rows(report, ranking)
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k.ljust(width)}  {v}" for k, v in rows]
    for vid, reason in list(report.failed.items())[:max_failed]:
        lines.append(f"  failed {vid}: {reason}")
    if len(report.failed) > max_failed:
        lines.append(f"  ... and {len(report.failed) - max_failed:,} more failed ids")
    status = "OK" if report.ok else ("STOPPED" if report.aborted else "INCOMPLETE")
    return f"crawl summary: {status}\n" + "\n".join(lines) + "\n"
