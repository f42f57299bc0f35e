"""The shared harness: interleaved repeated measurements, medians, result rows, tables.

Absolute times drift between runs and machines (and on a busy 2-core box, between
seconds), so every comparison runs its contenders in the same process, interleaved
round by round (A B C A B C ...), and reports medians and ratios of medians.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

API_KEY = "bench-key"
#: Seconds a fake server subprocess gets to print its URL.
_STARTUP_TIMEOUT = 30.0


@dataclass
class Row:
    """One line of a section's table: a figure, its target and the verdict.

    ``verdict`` is PASS or MISS when the row has a target, INFO when it is context
    (a baseline's figure, say), and SKIP when it could not be measured.
    """

    section: str
    name: str
    value: float | None
    unit: str
    target: str = ""
    verdict: str = "INFO"
    note: str = ""


@dataclass
class SectionResult:
    """A section's rows plus its raw measurements (kept in the JSON for re-analysis)."""

    title: str
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        *,
        target: str = "",
        ok: bool | None = None,
        note: str = "",
    ) -> Row:
        """Add a row; ``ok`` None means informational (no verdict)."""
        if value is None:
            verdict = "SKIP"
        elif ok is None:
            verdict = "INFO"
        else:
            verdict = "PASS" if ok else "MISS"
        row = Row(self.title, name, value, unit, target, verdict, note)
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        """Plain data for results JSON."""
        return {
            "title": self.title,
            "rows": [asdict(r) for r in self.rows],
            "raw": self.raw,
            "notes": self.notes,
        }


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


def interleave(
    contenders: Mapping[str, Callable[[], dict[str, float]]], rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Run each contender once per round, in turn (A B C A B C ...).

    Each call returns a dict of metrics; the result maps contender -> metric -> values.
    Alternating the order every other round keeps a drifting machine from always
    favouring the same contender.
    """
    out: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            for metric, value in contenders[name]().items():
                out[name].setdefault(metric, []).append(value)
    return out


def medians(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Contender -> metric -> median."""
    return {name: {m: median(v) for m, v in ms.items()} for name, ms in samples.items()}


def fmt(value: float | None) -> str:
    """A compact human rendering of a figure."""
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e12:
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 100_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:,.1f}"
    if magnitude >= 1:
        return f"{value:.3g}" if magnitude < 10 else f"{value:.1f}"
    return f"{value:.3f}"


def print_table(section: SectionResult) -> None:
    """Print one section as an aligned text table."""
    headers = ("figure", "value", "unit", "target", "verdict")
    lines = [(r.name, fmt(r.value), r.unit, r.target, r.verdict) for r in section.rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    rule = "  ".join("-" * w for w in widths)
    print(f"\n== {section.title} ==")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print(rule)
    for line in lines:
        cells = [c.rjust(w) if i == 1 else c.ljust(w) for i, (c, w) in enumerate(
            zip(line, widths, strict=True))]
        print("  ".join(cells).rstrip())
    for row in section.rows:
        if row.note:
            print(f"  * {row.name}: {row.note}")
    for note in section.notes:
        print(f"  note: {note}")


# -- fake server in its own process --------------------------------------------------


@dataclass
class ServerProcess:
    """A FakeKeyAPI running in a child process (so its CPU never counts as the client's)."""

    url: str
    proc: subprocess.Popen[str]

    def _get(self, route: str) -> Any:
        with urllib.request.urlopen(self.url + route, timeout=30) as resp:
            return msgspec.json.decode(resp.read())

    def stats(self, key: str | None = None) -> dict[str, Any]:
        """GET /_fake/stats (optionally for one key)."""
        stats: dict[str, Any] = self._get("/_fake/stats" + (f"?key={key}" if key else ""))
        return stats

    def requests(self) -> list[dict[str, Any]]:
        """GET /_fake/requests: the whole request log."""
        log: list[dict[str, Any]] = self._get("/_fake/requests")
        return log

    def reset(self) -> None:
        """POST /_fake/reset: clear the log and counters."""
        req = urllib.request.Request(self.url + "/_fake/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()


@contextlib.contextmanager
def fake_server(*args: str, keys: Sequence[str] = (API_KEY,)) -> Iterator[ServerProcess]:
    """Start ``python -m keyapi_async.testing`` on 127.0.0.1 with ``args``; always stop it."""
    cmd = [
        sys.executable, "-m", "keyapi_async.testing", "--host", "127.0.0.1", "--port", "0",
        "--api-key", *keys, *args,
    ]
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            assert proc.stdout is not None
            url = _await_url(proc, proc.stdout)
            if url is None:
                errors.seek(0)
                raise RuntimeError(f"fake server did not start: {errors.read()[-2000:]}")
            yield ServerProcess(url, proc)
        finally:
            stop_process(proc)


def _await_url(proc: subprocess.Popen[str], stdout: Any) -> str | None:
    urls = await_listening(proc, stdout)
    return urls[-1] if urls else None


def await_listening(proc: subprocess.Popen[str], stdout: Any) -> list[str] | None:
    """The URLs of the child's ``listening on URL [URL ...]`` line; None if it never came."""
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=0.2):
                line = stdout.readline()
                if line.startswith("listening on "):
                    return [str(url) for url in line.split()[2:]]
                if not line:
                    return None
    return None


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 5 s: the process is gone when this returns."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


def run_child(module: str, args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process; its last stdout line is JSON."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        raise RuntimeError(f"{module} {' '.join(args)} took over {timeout:g}s") from None
    finally:
        stop_process(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed ({proc.returncode}): {err[-2000:]}")
    result: dict[str, Any] = msgspec.json.decode(out.strip().splitlines()[-1])
    return result
