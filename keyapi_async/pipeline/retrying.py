"""Which failures are retried, and how long to wait between attempts.

python-backoff drives the loop. Its wait generator receives each exception, so one
generator gives both behaviours: exponential backoff with full jitter, or, when the server
sent ``Retry-After``, exactly that wait (jitter would only make us early or late).

Retried: 429 with Retry-After, 5xx (a proxy's HTML page included), connection errors,
timeouts and malformed bodies, i.e. errors whose ``retryable`` is true. Never retried: 400,
401, 402, or a 429 whose Retry-After exceeds ``max_retry_after``. A 429 without Retry-After
never gets here: the client treats it as a congestion signal (see ``client._congested``).
``asyncio.CancelledError`` is a BaseException and passes straight through.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import backoff
from backoff.types import Details

from .errors import KeyAPIError, RateLimitError

__all__ = ["RetryPolicy", "retry_waits"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def retry_waits(
    base: float, cap: float
) -> Generator[float, BaseException | None, None]:
    """Wait times: Retry-After exactly if given, else uniform(0, min(cap, base * 2**n))."""
    exc = yield 0.0  # python-backoff primes the generator with send(None)
    attempt = 0
    while True:
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = float(retry_after)
        else:
            wait = random.uniform(0.0, min(cap, base * 2**attempt))
        attempt += 1
        exc = yield wait


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and how patiently, a failed request is tried again."""

    #: Retries after the first attempt (so at most max_retries + 1 attempts).
    max_retries: int = 4
    #: First backoff ceiling in seconds; doubles each retry (full jitter below it).
    base_delay: float = 0.5
    #: Largest backoff in seconds.
    max_delay: float = 30.0
    #: Largest Retry-After honoured; a longer one raises RateLimitError at once.
    max_retry_after: float = 60.0

    def should_give_up(self, exc: Exception) -> bool:
        """True for errors that must not be retried."""
        if not isinstance(exc, KeyAPIError) or not exc.retryable:
            return True
        return (
            isinstance(exc, RateLimitError)
            and exc.retry_after is not None
            and exc.retry_after > self.max_retry_after
        )

    def wrap(
        self, attempt: F, on_retry: Callable[[Details], Coroutine[Any, Any, None]]
    ) -> F:
        """Wrap an async ``attempt`` function in this policy; ``on_retry`` runs before each wait."""
        decorator = backoff.on_exception(
            retry_waits,
            KeyAPIError,
            max_tries=self.max_retries + 1,
            jitter=None,  # retry_waits applies full jitter itself, and none to Retry-After
            giveup=self.should_give_up,
            on_backoff=on_retry,
            logger=None,  # we log ourselves: backoff's records would include call arguments
            base=self.base_delay,
            cap=self.max_delay,
        )
        return decorator(attempt)
