"""The retry policy: which errors, and how long between attempts."""

from __future__ import annotations

import pytest

import keyapi_async as ka
from keyapi_async.pipeline.retrying import retry_waits


def _waits(excs: list[BaseException | None], base: float = 0.5, cap: float = 30.0) -> list[float]:
    gen = retry_waits(base, cap)
    gen.send(None)
    return [gen.send(e) for e in excs]


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    err = ka.ServerError("boom", status=500)
    for _ in range(200):
        waits = _waits([err] * 8, base=0.5, cap=4.0)
        for n, wait in enumerate(waits):
            assert 0.0 <= wait <= min(4.0, 0.5 * 2**n)


def test_jitter_actually_varies() -> None:
    err = ka.ServerError("boom", status=500)
    assert len({_waits([err] * 3)[2] for _ in range(20)}) > 1


def test_retry_after_is_honoured_exactly() -> None:
    limited = ka.RateLimitError("slow down", status=429, code=429, retry_after=2.5)
    assert _waits([ka.ServerError("x"), limited, limited]) [1:] == [2.5, 2.5]


@pytest.mark.parametrize(
    ("error", "give_up"),
    [
        (ka.BadRequestError("bad", status=400), True),
        (ka.AuthenticationError("key", status=401), True),
        (ka.QuotaExceededError("credits", status=402), True),
        (ka.KeyAPIError("teapot", code=418), True),
        (ka.RateLimitError("slow", status=429), False),
        (ka.RateLimitError("slow", status=429, retry_after=60), False),
        (ka.RateLimitError("slow", status=429, retry_after=61), True),
        (ka.ServerError("down", status=502), False),
        (ka.APIConnectionError("reset"), False),
        (ka.DecodeError("truncated", status=200), False),
    ],
)
def test_which_errors_are_retried(error: Exception, give_up: bool) -> None:
    assert ka.RetryPolicy(max_retry_after=60).should_give_up(error) is give_up
