"""Draw docs/assets/limiter-windows.svg: request starts per sliding one-second window.

Runs the real ``LocalRateLimiter`` and a naive ``aiolimiter.AsyncLimiter(qps, 1)`` through
the same workload on a virtual clock (tests/virtual_clock.py), so the picture is exact and
the same on every machine. Regenerate with::

    python docs/scripts/limiter_windows.py

tests/docs/test_docs_figures.py fails if the committed SVG differs from this output.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiolimiter import AsyncLimiter

import keyapi_async as ka

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from virtual_clock import run_virtual  # noqa: E402

OUTPUT = ROOT / "docs" / "assets" / "limiter-windows.svg"
QPS = 10
#: (start second, tasks that all want a permit at that moment)
BURSTS = ((0.0, 40), (6.0, 25))
HORIZON = 10.0
WINDOW = 1.0


async def _starts(acquire: Callable[[], Awaitable[None]]) -> list[float]:
    """The start times of every task of BURSTS, each waiting on ``acquire`` first."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def task() -> None:
        await acquire()
        starts.append(loop.time())

    for at, count in BURSTS:
        await asyncio.sleep(max(0.0, at - loop.time()))
        await asyncio.gather(*(task() for _ in range(count)))
    return starts


async def _local() -> list[float]:
    return await _starts(ka.LocalRateLimiter(QPS).acquire)


async def _naive() -> list[float]:
    return await _starts(AsyncLimiter(QPS, 1).acquire)


def window_counts(starts: list[float]) -> list[tuple[float, int]]:
    """The step function "starts in the window (t - 1 s, t]" as (t, count) change points."""
    events: dict[float, int] = {}
    for s in starts:
        # The virtual clock adds nanosecond steps, which are not real: whole microseconds.
        s = round(s, 6)
        events[s] = events.get(s, 0) + 1
        leave = round(s + WINDOW, 6)
        events[leave] = events.get(leave, 0) - 1
    steps: list[tuple[float, int]] = [(0.0, 0)]
    count = 0
    for t in sorted(events):
        count += events[t]
        steps.append((t, count))
    return steps


def _path(steps: list[tuple[float, int]], x: Callable[[float], float],
          y: Callable[[float], float]) -> str:
    points: list[str] = []
    previous = 0
    for t, count in steps:
        if t > HORIZON:
            break
        points.append(f"{x(t):.1f},{y(previous):.1f}")
        points.append(f"{x(t):.1f},{y(count):.1f}")
        previous = count
    points.append(f"{x(HORIZON):.1f},{y(previous):.1f}")
    return " ".join(points)


def render(local: list[float], naive: list[float]) -> str:
    """The SVG document comparing both series."""
    width, height = 760, 350
    left, right, top, bottom = 50, 20, 70, 40
    top_count = 2 * QPS + 2
    local_steps, naive_steps = window_counts(local), window_counts(naive)
    local_max = max(c for _, c in local_steps)
    naive_max = max(c for _, c in naive_steps)

    def x(t: float) -> float:
        return left + (width - left - right) * t / HORIZON

    def y(count: float) -> float:
        return top + (height - top - bottom) * (1 - count / top_count)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">Request starts in the '
        f"sliding window (t - 1 s, t], qps = {QPS}</text>",
        f'<text x="{left}" y="36">{BURSTS[0][1]} tasks want to start at t = '
        f"{BURSTS[0][0]:g} s, {BURSTS[1][1]} more at t = {BURSTS[1][0]:g} s</text>",
    ]
    for count in range(0, top_count + 1, 4):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(count):.1f}" '
                   f'y2="{y(count):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 8}" y="{y(count) + 4:.1f}" text-anchor="end">'
                   f"{count}</text>")
    for second in range(int(HORIZON) + 1):
        out.append(f'<text x="{x(second):.1f}" y="{height - bottom + 16}" '
                   f'text-anchor="middle">{second}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" '
               'text-anchor="middle">t (seconds)</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(QPS):.1f}" y2="{y(QPS):.1f}" '
               'stroke="black" stroke-dasharray="6 4"/>')
    out.append(f'<text x="{width - right - 4}" y="{y(QPS) - 6:.1f}" text-anchor="end">'
               f"qps = {QPS}</text>")
    out.append(f'<polyline fill="none" stroke="#d62728" stroke-width="2" '
               f'points="{_path(naive_steps, x, y)}"/>')
    out.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="2.5" '
               f'points="{_path(local_steps, x, y)}"/>')
    legend_y = top - 16
    out.append(f'<line x1="{left}" x2="{left + 24}" y1="{legend_y}" y2="{legend_y}" '
               'stroke="#1f77b4" stroke-width="2.5"/>')
    out.append(f'<text x="{left + 30}" y="{legend_y + 4}">ka.LocalRateLimiter({QPS}): '
               f"at most {local_max} in any window</text>")
    out.append(f'<line x1="{left + 370}" x2="{left + 394}" y1="{legend_y}" y2="{legend_y}" '
               'stroke="#d62728" stroke-width="2"/>')
    out.append(f'<text x="{left + 400}" y="{legend_y + 4}">aiolimiter.AsyncLimiter({QPS}, 1): '
               f"up to {naive_max}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def generate() -> str:
    """Run both limiters on the virtual clock and return the SVG text."""
    return render(run_virtual(_local()), run_virtual(_naive()))


if __name__ == "__main__":
    OUTPUT.write_text(generate(), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
