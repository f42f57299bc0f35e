"""An event loop whose clock jumps to the next timer whenever nothing is ready to run.

Rate-limiter guarantees are statements about the loop's clock; on this loop they can be
checked exactly and instantly, with no dependence on the machine's speed or load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector loop with simulated time (no real I/O should be awaited on it)."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def _run_once(self) -> None:  # type: ignore[override]
        ready = self._ready  # type: ignore[attr-defined]
        scheduled = self._scheduled  # type: ignore[attr-defined]
        if not ready and scheduled:
            # At least a nanosecond passes, as on a real clock: a timer set for "now plus
            # a float-rounding error" would otherwise fire at the same instant forever.
            self._now = max(self._now + 1e-9, scheduled[0].when())
        super()._run_once()  # type: ignore[misc]


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh VirtualClockLoop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
