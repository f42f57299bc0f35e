"""A bounded window of concurrent tasks, consumed in completion order.

Both auto-paginating iterators fan requests out through it. Leaving the window (normally,
by an error, or because the consumer stopped iterating) cancels whatever is still running
and waits for it, so no task outlives the call that started it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["TaskWindow"]

T = TypeVar("T")


class TaskWindow(Generic[T]):
    """Tasks started with :meth:`spawn`, handed back by :meth:`next_done` as they finish."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[T]] = set()
        # A queue fed by done-callbacks: O(1) per task, where asyncio.wait over the whole
        # set would re-register a callback on every running task at each call.
        self._done: asyncio.Queue[asyncio.Task[T]] = asyncio.Queue()

    def __len__(self) -> int:
        """Tasks spawned and not yet handed back."""
        return len(self._running) + self._done.qsize()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start ``coro`` as a task in this window."""
        task = asyncio.get_running_loop().create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._on_done)
        return task

    def _on_done(self, task: asyncio.Task[T]) -> None:
        self._running.discard(task)
        self._done.put_nowait(task)

    async def next_done(self) -> asyncio.Task[T]:
        """Wait for the next finished task (possibly a cancelled one)."""
        return await self._done.get()

    async def __aenter__(self) -> TaskWindow[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            # Shielded so a cancellation of the caller still lets the children finish
            # cancelling; the caller's CancelledError is re-raised by the await after.
            await asyncio.shield(asyncio.gather(*running, return_exceptions=True))
        while not self._done.empty():
            task = self._done.get_nowait()
            if not task.cancelled():
                task.exception()  # mark retrieved: no "exception was never retrieved"
