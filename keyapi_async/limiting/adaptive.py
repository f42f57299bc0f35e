"""The adaptive pacing rate: how fast to go, learned from the server's 429s.

:class:`AdaptiveRate` is CUBIC congestion control turned into a request rate, as in
botocore's adaptive retry mode (``retries/throttling.py``): on a 429 the rate drops to
``beta`` times the rate it had, then grows back along a cubic curve that is flat around
that rate (where the limit probably is) and steep away from it::

    rate(t) = scale * (t - K)**3 + w_max,   K = cbrt(w_max * (1 - beta) / scale)

where ``t`` is the time since the last decrease and ``w_max`` the rate when it happened.
Before its first 429 an ``"auto"`` rate is in slow start, doubling every ``doubling``
seconds from ``start``; a fixed rate sits at its ceiling. Always
``floor <= rate <= ceiling``.

The rate is a function of time alone (given the state of the last decrease), which keeps
this object pure (every method takes ``now``) and lets a Redis script share it between
processes by storing four numbers. Two refinements make it hold against real gateways:

* **One decrease per congestion event.** A strict gateway refuses everything already in
  flight when it refuses one request; a 429 for a request *started* before the last
  decrease says nothing new, so it does not cut again.
* **A gentle cut.** ``beta`` is 0.8 where botocore has 0.7: against a gateway without
  burst (nginx ``limit_req``), network and scheduling jitter make a few arrivals look too
  close at any rate near the limit, so 429s come as a trickle rather than a wall, and a
  30 % cut for each leaves too much unused (measured on a simulated gateway; see
  docs/concepts/rate-limiting.md).
* **The curve only advances while the rate is used** (:meth:`idle` shifts its origin), so
  an idle client does not come back at a rate it never tried.

:class:`Patience` is the other half of the client's 429 handling: how long to keep trying
while every answer is a 429.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = [
    "DEFAULT_AUTO_CEILING",
    "DEFAULT_BETA",
    "DEFAULT_DOUBLING",
    "DEFAULT_SCALE",
    "DEFAULT_START_QPS",
    "AdaptiveRate",
    "Patience",
    "default_floor",
]

#: Multiplicative decrease: the rate after a 429 is ``beta`` times the rate before it.
DEFAULT_BETA: Final = 0.8
#: CUBIC's scale constant (rate units per second cubed): how fast the curve leaves w_max.
DEFAULT_SCALE: Final = 0.4
#: Where ``qps="auto"`` starts (request starts per second).
DEFAULT_START_QPS: Final = 5.0
#: Seconds for the slow-start rate to double.
DEFAULT_DOUBLING: Final = 1.0
#: The ceiling of ``qps="auto"`` when no ``max_qps`` is given.
DEFAULT_AUTO_CEILING: Final = 1000.0


def default_floor(ceiling: float) -> float:
    """The lowest rate a 429 storm can push the rate to: a tenth of the ceiling, at most 1."""
    return min(1.0, ceiling / 10)


def _positive(name: str, value: float) -> float:
    if not (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    ):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class AdaptiveRate:
    """A pacing rate between ``floor`` and ``ceiling`` that backs off on 429s (CUBIC).

    Guarantees, for every ``now``: ``floor <= rate(now) <= ceiling``; a 429
    (:meth:`throttled`) for a request started before the last decrease changes nothing;
    any other drops the rate to ``max(floor, beta * w)``, ``w`` being the rate the
    refused request was paced at. Between decreases the rate never falls; it is back at
    ``w`` after ``K`` seconds of use.

    Args:
        ceiling: The highest rate: the configured ``qps``, or ``max_qps`` for auto.
        start: Slow start from this rate (``qps="auto"``); None starts at the ceiling.
        floor: The lowest rate (default :func:`default_floor`).
        beta: The multiplicative decrease.
        scale: CUBIC's constant C.
        doubling: Seconds for the slow-start rate to double.
    """

    __slots__ = (
        "_k", "beta", "ceiling", "decreases", "doubling", "floor", "last_decrease", "origin",
        "phase", "scale", "start", "w_max",
    )

    def __init__(
        self,
        ceiling: float,
        *,
        start: float | None = None,
        floor: float | None = None,
        beta: float = DEFAULT_BETA,
        scale: float = DEFAULT_SCALE,
        doubling: float = DEFAULT_DOUBLING,
    ) -> None:
        self.ceiling = _positive("ceiling", ceiling)
        self.floor = default_floor(self.ceiling) if floor is None else _positive("floor", floor)
        if self.floor > self.ceiling:
            raise ValueError(f"floor {self.floor:g} is above the ceiling {self.ceiling:g}")
        if not 0 < beta < 1:
            raise ValueError(f"beta must be in (0, 1), got {beta!r}")
        self.beta = float(beta)
        self.scale = _positive("scale", scale)
        self.doubling = _positive("doubling", doubling)
        self.start = None if start is None else min(self.ceiling, _positive("start", start))
        #: "steady" (at the ceiling), "slow_start" or "cubic"
        self.phase = "steady" if self.start is None else "slow_start"
        #: The curve's time origin: the last decrease, or the start, plus time spent idle.
        #: None until the first call that takes ``now`` anchors it.
        self.origin: float | None = None
        #: When the last decrease happened (not shifted by idle time); None before one.
        self.last_decrease: float | None = None
        #: The rate at the last decrease: the learned limit.
        self.w_max = self.ceiling
        self._k = 0.0
        #: How many decreases so far (congestion events, not 429s).
        self.decreases = 0

    def _anchor(self, now: float) -> float:
        if self.origin is None:
            self.origin = now
        return self.origin

    def rate(self, now: float) -> float:
        """The pacing rate at ``now``, in request starts per second."""
        if self.phase == "steady":
            return self.ceiling
        elapsed = 0.0 if self.origin is None else max(0.0, now - self.origin)
        if self.phase == "slow_start":
            assert self.start is not None
            # Capped exponent: 2**1024 overflows, and the ceiling is reached long before.
            rate = self.start * math.pow(2.0, min(elapsed / self.doubling, 64.0))
        else:
            d = elapsed - self._k
            rate = self.scale * d * d * d + self.w_max
        return min(self.ceiling, max(self.floor, rate))

    def peak(self, now: float) -> float:
        """The highest rate the server is believed to take for a moment: the ceiling of a
        fixed qps, the rate at the last decrease, or the rate now if higher."""
        rate = self.rate(now)
        return rate if self.phase == "slow_start" else max(rate, self.w_max)

    @property
    def learned(self) -> float | None:
        """The rate at the last decrease (where the server started refusing), if any."""
        return None if self.last_decrease is None else self.w_max

    def throttled(self, started_at: float, now: float) -> bool:
        """A request started at ``started_at`` was refused with a 429 at ``now``.

        Returns True if this cut the rate: once per congestion event, so not for a request
        started before the last decrease (it was paced at the old rate).
        """
        if self.last_decrease is not None and started_at < self.last_decrease:
            return False
        self._anchor(now)
        # The rate the refused request was paced at (never above the rate now: the curve
        # only rises between decreases, and idle shifts only move the origin later).
        w_max = min(self.rate(started_at), self.rate(now))
        self._decrease(w_max, now)
        return True

    def _decrease(self, w_max: float, now: float) -> None:
        self.w_max = w_max
        self._k = math.pow(w_max * (1.0 - self.beta) / self.scale, 1.0 / 3.0)
        self.origin = self.last_decrease = now
        self.phase = "cubic"
        self.decreases += 1

    def seed(self, learned: float, now: float) -> bool:
        """Start from a limit learned before (a resumed crawl), as if just throttled there.

        Only in slow start (an ``"auto"`` rate that has not met a 429 yet); returns
        whether it took effect.
        """
        if self.phase != "slow_start":
            return False
        self._decrease(min(self.ceiling, max(self.floor, _positive("learned", learned))), now)
        self.decreases -= 1  # not a congestion event of this run
        return True

    def idle(self, seconds: float, now: float) -> None:
        """The rate went unused for ``seconds``: the curve waits instead of growing."""
        self._anchor(now)
        if seconds > 0 and self.origin is not None:
            self.origin = min(now, self.origin + seconds)

    def __repr__(self) -> str:
        return (
            f"AdaptiveRate(phase={self.phase}, ceiling={self.ceiling:g}, floor={self.floor:g}, "
            f"w_max={self.w_max:g}, decreases={self.decreases})"
        )


class Patience:
    """How long to keep going while every answer is a 429: bounded by time, not by count.

    A streak starts at the first 429 after a success (or ever); :meth:`throttled` returns
    True once a 429 comes ``seconds`` or more after the streak began, and the streak
    resets, so the next call gets its full patience again.
    """

    __slots__ = ("seconds", "since")

    def __init__(self, seconds: float) -> None:
        if not (
            isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds >= 0
        ):
            raise ValueError(f"rate_limit_patience must be a number >= 0, got {seconds!r}")
        self.seconds = float(seconds)
        #: When the current streak of 429s began; None while answers succeed.
        self.since: float | None = None

    def success(self) -> None:
        """An answer succeeded: the streak is over."""
        self.since = None

    def throttled(self, now: float) -> bool:
        """A 429 came at ``now``; True when patience is exhausted (the streak then resets)."""
        if self.since is None:
            self.since = now
        if now - self.since >= self.seconds:
            self.since = None
            return True
        return False
