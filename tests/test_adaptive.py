"""The adaptive rate (CUBIC on 429s) and the patience, on explicit clocks: pure arithmetic."""

from __future__ import annotations

import math
import random

import pytest

from keyapi_async.limiting.adaptive import (
    DEFAULT_BETA,
    DEFAULT_SCALE,
    AdaptiveRate,
    Patience,
    default_floor,
)


def k_of(w_max: float) -> float:
    return (w_max * (1 - DEFAULT_BETA) / DEFAULT_SCALE) ** (1 / 3)


def test_a_fixed_rate_sits_at_its_ceiling_until_a_429() -> None:
    rate = AdaptiveRate(50)
    assert rate.phase == "steady"
    assert rate.rate(0) == rate.rate(1e6) == 50
    assert rate.learned is None


def test_a_429_cuts_the_rate_by_beta() -> None:
    rate = AdaptiveRate(50)
    assert rate.throttled(started_at=10.0, now=10.05)
    assert rate.rate(10.05) == pytest.approx(50 * DEFAULT_BETA)
    assert rate.learned == 50
    assert rate.decreases == 1


def test_one_decrease_per_congestion_event() -> None:
    # A strict gateway refuses everything in flight at once: those 429s are one event.
    rate = AdaptiveRate(50)
    rate.throttled(started_at=10.0, now=10.5)
    after_first = rate.rate(10.5)
    for k in range(20):  # requests started before the decrease, refused after it
        assert not rate.throttled(started_at=10.0 + k * 0.02, now=10.5 + k * 0.001)
    assert rate.rate(10.52) >= after_first
    assert rate.decreases == 1
    # A request started after the decrease and refused is a new event.
    assert rate.throttled(started_at=10.6, now=10.7)
    assert rate.decreases == 2
    assert rate.rate(10.7) < after_first


def test_the_cut_is_from_the_rate_the_refused_request_was_paced_at() -> None:
    rate = AdaptiveRate(100, start=5)  # slow start: doubles every second
    rate.idle(0.0, now=0.0)  # anchored at 0
    # Started at 3 s (rate 40), refused 0.5 s later when the rate had grown to ~57.
    assert rate.rate(3.5) == pytest.approx(5 * 2**3.5)
    rate.throttled(started_at=3.0, now=3.5)
    assert rate.learned == pytest.approx(40)
    assert rate.rate(3.5) == pytest.approx(40 * DEFAULT_BETA)


def test_recovery_follows_the_cubic_curve_back_to_w_max_and_beyond_to_the_ceiling() -> None:
    rate = AdaptiveRate(60)
    rate.throttled(0.0, 0.0)  # w_max 60
    rate.ceiling = 80.0  # (a raised ceiling, to watch the curve pass w_max)
    k = k_of(60)
    assert rate.rate(k) == pytest.approx(60)
    # Flat around w_max: half a second either side it moves by less than 0.1.
    assert abs(rate.rate(k + 0.5) - 60) < 0.1 and abs(rate.rate(k - 0.5) - 60) < 0.1
    samples = [rate.rate(t / 10) for t in range(200)]
    assert samples == sorted(samples)  # never falls between decreases
    assert rate.rate(100) == 80  # the ceiling holds


def test_the_rate_never_exceeds_the_ceiling_nor_falls_below_the_floor() -> None:
    rng = random.Random(5)
    rate = AdaptiveRate(20, start=5)
    now = 0.0
    for _ in range(2000):
        now += rng.expovariate(5)
        if rng.random() < 0.3:
            rate.throttled(now - rng.uniform(0, 0.5), now)
        if rng.random() < 0.1:
            rate.idle(rng.uniform(0, 2), now)
        assert rate.floor <= rate.rate(now) <= 20
    assert rate.floor == default_floor(20) == 1.0


def test_a_429_storm_bottoms_out_at_the_floor_and_recovers_afterwards() -> None:
    rate = AdaptiveRate(50)
    now = 0.0
    for _ in range(30):  # every request refused, each started after the last decrease
        now += 0.1
        rate.throttled(now - 0.01, now)
    assert rate.rate(now) == rate.floor == 1.0
    # Answers succeed again: back at the ceiling within seconds, not minutes.
    assert rate.rate(now + 10) == 50


def test_slow_start_doubles_every_second_of_use() -> None:
    rate = AdaptiveRate(1000, start=5)
    assert rate.phase == "slow_start"
    assert rate.rate(123.0) == 5  # not anchored yet: no use, no growth
    rate.idle(0.0, now=100.0)  # the first permit anchors the curve
    assert [rate.rate(100.0 + t) for t in range(4)] == pytest.approx([5, 10, 20, 40])
    assert rate.rate(200.0) == 1000  # capped by the ceiling (max_qps)
    rate.throttled(started_at=103.0, now=103.2)
    assert rate.phase == "cubic" and rate.learned == pytest.approx(40)


def test_idle_time_does_not_count_as_recovery() -> None:
    rate = AdaptiveRate(50)
    rate.throttled(0.0, 0.0)
    busy = rate.rate(1.0)
    rate.idle(100.0, now=101.0)  # unused for 100 s, from 1 s on
    assert rate.rate(101.0) == pytest.approx(busy)
    # Idle never moves the curve past now.
    rate.idle(1e9, now=102.0)
    assert rate.origin == 102.0


def test_seeding_starts_auto_from_a_learned_limit() -> None:
    rate = AdaptiveRate(1000, start=5)
    assert rate.seed(40.0, now=7.0)
    assert rate.rate(7.0) == pytest.approx(40 * DEFAULT_BETA)
    assert rate.rate(7.0 + k_of(40)) == pytest.approx(40)
    assert rate.learned == 40 and rate.decreases == 0
    assert not rate.seed(10.0, now=8.0)  # only before anything was learned
    assert not AdaptiveRate(50).seed(10.0, now=0.0)  # and only for auto


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ceiling": 0},
        {"ceiling": math.nan},
        {"ceiling": 10, "floor": 20},
        {"ceiling": 10, "beta": 1},
        {"ceiling": 10, "beta": 0},
        {"ceiling": 10, "start": -1},
        {"ceiling": 10, "doubling": 0},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveRate(**kwargs)


def test_patience_runs_out_after_its_seconds_of_429s_without_success() -> None:
    patience = Patience(120.0)
    assert not patience.throttled(1000.0)  # the streak starts here
    assert not patience.throttled(1119.9)
    assert patience.throttled(1120.0)
    # It gave up: the streak resets, the next call has its full patience.
    assert not patience.throttled(1121.0)
    assert not patience.throttled(1240.0)


def test_a_success_ends_the_streak() -> None:
    patience = Patience(10.0)
    patience.throttled(0.0)
    patience.success()
    assert not patience.throttled(9.5)  # a new streak, from 9.5
    assert not patience.throttled(19.0)
    assert patience.throttled(19.5)


def test_a_429_long_after_the_last_success_starts_a_streak_rather_than_ending_one() -> None:
    patience = Patience(10.0)
    patience.success()
    assert not patience.throttled(1e6)


@pytest.mark.parametrize("bad", [-1, math.nan, True, "120"])
def test_bad_patience_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="rate_limit_patience"):
        Patience(bad)  # type: ignore[arg-type]
