"""A rate limiter shared through Redis: every process and host using one key, one budget.

:class:`RedisRateLimiter` is a :class:`~keyapi_async.limiting.base.RateLimiter` whose schedule
lives in Redis, so N workers (processes or machines) sharing a ``name`` together start at
most ``qps`` requests in any one-second window. Needs the ``redis`` extra
(``pip install 'keyapi-async[redis]'``); importing this module does not.

The schedule is a zero-burst GCRA kept in one Redis hash, with the adaptive rate
(:mod:`keyapi_async.limiting.adaptive`) it paces at, driven by one Lua script that reads Redis
``TIME``: the Redis server's clock is the only clock, so the workers' clocks never
matter. Also here: :func:`shard_filter` and :func:`parse_shard`, which split one ids file
between N workers deterministically.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..pipeline.errors import ConfigurationError, RateLimiterUnavailableError
from .adaptive import AdaptiveRate
from .base import DEFAULT_HEADROOM, QpsSetting, check_qps

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "KEY_PREFIX",
    "STATE_RETENTION",
    "RateLimiterUnavailableError",
    "RedisRateLimiter",
    "budget_name",
    "parse_shard",
    "shard_filter",
    "shard_of",
]

#: Prefix of the Redis key holding a limiter's schedule: ``KEY_PREFIX + name``.
KEY_PREFIX: Final = "keyapi_async:ratelimit:"

#: Seconds to wait for Redis to connect or answer before the limiter is declared down.
DEFAULT_REDIS_TIMEOUT: Final = 5.0
#: Seconds a learned (adaptive) state is kept after the schedule's last use.
STATE_RETENTION: Final = 3600.0

# One script, five modes, all on the hash KEYS[1] with fields
#   tat    - the theoretical arrival time: the first free slot, in Redis-clock microseconds
#   resume - the end of the latest pause (penalize), in Redis-clock microseconds
#   phase  - the adaptive rate's phase: steady (at the ceiling), slow (start) or cubic
#   origin - the rate curve's time origin (the last decrease, plus time the schedule idled)
#   dec    - when the last decrease happened (absent before the first)
#   wmax   - the rate at the last decrease (the learned limit)
# ARGV[1] is the mode, ARGV[2..9] the rate's parameters (ceiling, floor, start (0 for a
# fixed qps), headroom, beta, scale, doubling, retention_us: the same for every worker),
# then:
#   reserve                                -> {slot_us, delay_us, rate, learned}: the slot
#                                             taken, how long the caller sleeps until it
#   confirm  ARGV[10]=slot_us ARGV[11]=reserved_at_us
#                                          -> {slot_us, 0, ...} if no pause covers that
#                                             slot and no decrease came after it was
#                                             reserved (go); else a fresh reservation
#   pause    ARGV[10]=seconds_us            -> {resume_us, 0, ...}
#   throttle ARGV[10]=age_us (since the refused request started)
#                                          -> {1 if the rate was cut else 0, 0, ...}
#   seed     ARGV[10]=learned rate          -> {1 if it took effect else 0, 0, ...}
# The rate is AdaptiveRate's (keyapi_async.limiting.adaptive), on Redis' clock. Times are integral
# microseconds, exact in Lua's doubles (about 2^50 today), and written with %d because
# Lua's tostring keeps only 14 significant digits; rates go back as strings, because Redis
# truncates a Lua number to an integer. The key expires once its times are in the past
# (plus STATE_RETENTION when it holds a learned rate), when absent means the same thing.
_SCRIPT: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local key = KEYS[1]
local mode = ARGV[1]
local ceiling, floor, start = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local headroom, beta = tonumber(ARGV[5]), tonumber(ARGV[6])
local scale, doubling = tonumber(ARGV[7]), tonumber(ARGV[8])
local retention = tonumber(ARGV[9])
local s = redis.call('HMGET', key, 'tat', 'resume', 'phase', 'origin', 'dec', 'wmax')
local tat = tonumber(s[1]) or 0
local resume = tonumber(s[2]) or 0
local phase = s[3]
local origin = tonumber(s[4]) or now
local dec = tonumber(s[5])
local wmax = tonumber(s[6]) or ceiling
if not phase then
  if start > 0 then phase = 'slow' else phase = 'steady' end
end

local function rate_at(at)
  if phase == 'steady' then return ceiling end
  local elapsed = math.max(0, at - origin) / 1000000
  local r
  if phase == 'slow' then
    r = start * 2 ^ math.min(elapsed / doubling, 64)
  else
    local d = elapsed - (wmax * (1 - beta) / scale) ^ (1 / 3)
    r = scale * d * d * d + wmax
  end
  return math.min(ceiling, math.max(floor, r))
end

local function store()
  redis.call('HSET', key, 'tat', string.format('%d', tat),
             'resume', string.format('%d', resume), 'phase', phase,
             'origin', string.format('%d', origin))
  if dec then
    redis.call('HSET', key, 'dec', string.format('%d', dec), 'wmax', string.format('%.17g', wmax))
  end
  local horizon = math.max(tat, resume) - now
  if phase ~= 'steady' then horizon = math.max(horizon, 0) + retention end
  redis.call('PEXPIRE', key, math.floor(horizon / 1000) + 2)
end

local function reply(first, second)
  local learned = ''
  if dec then learned = string.format('%.17g', wmax) end
  return {first, second, string.format('%.17g', rate_at(now)), learned}
end

local function decrease(w)
  wmax = w
  origin = now
  dec = now
  phase = 'cubic'
end

if mode == 'pause' then
  resume = math.max(resume, now + tonumber(ARGV[10]))
  tat = math.max(tat, resume)
  store()
  return reply(resume, 0)
end
if mode == 'throttle' then
  local started = now - tonumber(ARGV[10])
  if dec and started < dec then
    return reply(0, 0)
  end
  decrease(math.min(rate_at(started), rate_at(now)))
  store()
  return reply(1, 0)
end
if mode == 'seed' then
  if phase ~= 'slow' then
    return reply(0, 0)
  end
  decrease(math.min(ceiling, math.max(floor, tonumber(ARGV[10]))))
  store()
  return reply(1, 0)
end
if mode == 'confirm' then
  local slot = tonumber(ARGV[10])
  if slot >= resume and not (dec and dec > tonumber(ARGV[11])) then
    return reply(slot, 0)
  end
end
if tat < now and phase ~= 'steady' then
  -- Nobody used the schedule since tat: the rate curve waits instead of growing.
  origin = math.min(now, origin + (now - tat))
end
local slot = math.max(tat, now, resume)
tat = slot + math.ceil(1000000 / (rate_at(now) * (1 - headroom)))
store()
return reply(slot, slot - now)
"""

_Id = TypeVar("_Id", str, int)


def _redis_error_types() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.RedisError, OSError)


class RedisRateLimiter:
    """Paces request starts across every process that shares ``name``, through Redis.

    Guarantee, for all workers using the same Redis and ``name`` together: consecutive
    permits are at least ``1 / (r * (1 - headroom))`` seconds apart on the Redis server's
    clock, where ``r <= qps`` is the shared pacing rate, with no burst at start-up or
    after a pause. So any one-second window holds at most ``qps`` starts (``ceil(qps)``
    for a fractional qps), and the ``headroom`` share of each second absorbs the jitter
    between Redis and the workers, as in :class:`~keyapi_async.limiting.local.LocalRateLimiter`.

    The rate adapts as in ``LocalRateLimiter``, shared: a 429 seen by any worker
    (:meth:`on_throttle`) lowers the rate of all of them, once per congestion event, and
    the recovery is shared too; ``qps="auto"`` discovers the key's limit for all workers
    together. Every worker sharing a name must use the same ``qps`` and ``max_qps``.
    A learned rate is kept in Redis for an hour after the last use.

    Each :meth:`acquire` reserves the next slot with one atomic script call and sleeps
    once until it; on waking it asks Redis once more, so a pause set meanwhile by
    :meth:`penalize` (Retry-After) or a decrease holds back slots reserved before it.

    If Redis cannot be reached (``timeout`` seconds per attempt, plus redis-py's few quick
    reconnects), :meth:`acquire` raises :class:`RateLimiterUnavailableError` (fatal): a
    crawl stops cleanly and can be resumed; it never falls back to an unshared budget.

    Use ``async with RedisRateLimiter(...) as limiter:`` or call :meth:`aclose`; the
    client does not close a limiter it was given. Each process (and event loop) needs its
    own instance. Needs ``pip install 'keyapi-async[redis]'``.

    Args:
        redis_url: ``redis://[user:password@]host:port/db``, ``rediss://`` or ``unix://``.
        name: The shared budget's name: use one per API key.
        qps: Request starts per second across all workers together, or ``"auto"``.
        max_qps: The ceiling of ``qps="auto"``.
        headroom: Fraction of the budget left unused to absorb jitter (default 2 %).
        timeout: Seconds to connect to and wait for Redis before giving up.
        control: An :class:`~keyapi_async.limiting.adaptive.AdaptiveRate` whose parameters to
            use (only its parameters: the state lives in Redis).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        name: str,
        qps: QpsSetting,
        max_qps: float | None = None,
        headroom: float = DEFAULT_HEADROOM,
        timeout: float = DEFAULT_REDIS_TIMEOUT,
        control: AdaptiveRate | None = None,
    ) -> None:
        try:
            ceiling, start = check_qps(qps, max_qps)
            params = control or AdaptiveRate(ceiling, start=start)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if not (isinstance(headroom, (int, float)) and 0 <= headroom < 1):
            raise ConfigurationError(f"headroom must be in [0, 1), got {headroom!r}")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigurationError(f"timeout must be a positive number, got {timeout!r}")
        try:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import ExponentialBackoff
        except ImportError:
            raise ConfigurationError(
                "RedisRateLimiter needs the redis package: pip install 'keyapi-async[redis]'"
            ) from None
        self.auto = qps == "auto"
        self._max_qps = params.ceiling
        self._rate = params.start or params.ceiling  # the shared rate, as last seen
        self._learned: float | None = None
        self.name = name
        self.key = KEY_PREFIX + name
        #: Seconds between permits at the ceiling; rounded up to whole microseconds.
        self.interval_us = math.ceil(1_000_000 / (params.ceiling * (1.0 - headroom)))
        self.interval = self.interval_us / 1_000_000
        self._params = (
            repr(params.ceiling), repr(params.floor), repr(params.start or 0.0),
            repr(float(headroom)), repr(params.beta), repr(params.scale),
            repr(params.doubling), str(int(STATE_RETENTION * 1_000_000)),
        )
        self._errors = _redis_error_types()
        try:
            # Connects lazily, on the first command. A blip is retried a few times within
            # about a second; longer, and the limiter reports itself unavailable.
            self._redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
                redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            )
        except ValueError as exc:
            # Raised for a malformed URL; the message names the scheme, not the password.
            raise ConfigurationError(f"invalid redis_url: {exc}") from None
        self._script = self._redis.register_script(_SCRIPT)
        # One acquire at a time per process, in FIFO order: one Redis call at a time (a
        # crawl may have hundreds of tasks waiting; redis-py's pool holds 100 connections),
        # and at most one reservation outstanding, so cancelled waiters never leave a row
        # of reserved, unused slots that delay every other worker.
        self._lock = asyncio.Lock()

    @property
    def qps(self) -> float:
        """The shared pacing rate as of this process's last Redis call."""
        return self._rate

    @property
    def max_qps(self) -> float:
        """The ceiling: the configured qps, or ``max_qps`` for ``"auto"``."""
        return self._max_qps

    @property
    def learned_qps(self) -> float | None:
        """The shared rate at the last 429 of any worker, as last seen, if any."""
        return self._learned

    async def _call(self, mode: str, *args: int | float) -> tuple[int, int]:
        try:
            reply: Any = await self._script(keys=[self.key], args=(mode, *self._params, *args))
        except self._errors as exc:
            raise RateLimiterUnavailableError(
                f"shared rate limiter {self.name!r} unavailable: {type(exc).__name__}: {exc}"
            ) from exc
        self._rate = float(reply[2])
        self._learned = float(reply[3]) if reply[3] else None
        return int(reply[0]), int(reply[1])

    async def reserve(self) -> tuple[int, int]:
        """Reserve the next slot: ``(slot, delay)`` in Redis-clock microseconds.

        The building block of :meth:`acquire`, public for tests and diagnostics; the slot
        is taken whether or not the caller then uses it.
        """
        return await self._call("reserve")

    async def confirm(self, slot: int, reserved_at: int | None = None) -> tuple[int, int]:
        """Check a reserved ``slot`` on waking: ``(slot, 0)`` if no pause covers it and
        the rate was not cut after ``reserved_at`` (go); else a fresh reservation, as
        :meth:`reserve` returns."""
        return await self._call("confirm", slot, slot if reserved_at is None else reserved_at)

    async def acquire(self) -> None:
        """Reserve the next shared slot and sleep until it, honouring pauses and cuts."""
        async with self._lock:
            slot, delay = await self.reserve()
            while delay > 0:
                reserved_at = slot - delay
                await asyncio.sleep(delay / 1_000_000)
                # One more call, not a poll: it returns at once unless a pause or a cut
                # came while we slept, in which case it reserves a slot after it.
                slot, delay = await self.confirm(slot, reserved_at)

    async def penalize(self, seconds: float) -> None:
        """Start nothing, in any worker, for ``seconds`` from now; longer pauses win."""
        await self._call("pause", max(0, math.ceil(seconds * 1_000_000)))

    async def on_throttle(self, started_at: float) -> None:
        """A request started at ``started_at`` (this loop's clock) got a 429: lower the
        shared rate, unless it started before the last decrease of any worker."""
        age = asyncio.get_running_loop().time() - started_at
        await self._call("throttle", max(0, math.ceil(age * 1_000_000)))

    async def seed(self, learned_qps: float) -> bool:
        """Start a shared ``"auto"`` rate from a limit learned before, unless the workers
        have learned one already; returns whether it took effect."""
        applied, _ = await self._call("seed", float(learned_qps))
        return bool(applied)

    async def aclose(self) -> None:
        """Release the Redis connections. The limiter cannot be used afterwards."""
        await self._redis.aclose()

    async def __aenter__(self) -> RedisRateLimiter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        # No URL: it may carry the Redis password.
        mode = "auto" if self.auto else f"{self._max_qps:g}"
        return (
            f"RedisRateLimiter(name={self.name!r}, qps={mode}, rate={self._rate:.4g}, "
            f"max_qps={self._max_qps:g})"
        )


def budget_name(api_key: str) -> str:
    """A shared-budget name for ``api_key`` that does not reveal it: ``key-`` + 16 hex.

    Workers given the same key get the same name, so one key means one budget by default.
    """
    return "key-" + hashlib.sha256(api_key.strip().encode()).hexdigest()[:16]


def parse_shard(spec: str) -> tuple[int, int]:
    """Parse ``"I/N"`` (1 <= I <= N, e.g. ``"2/4"``) into ``(I, N)``; ValueError if bad."""
    index_text, sep, count_text = spec.partition("/")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ValueError(f"invalid shard {spec!r}: expected I/N with 1 <= I <= N, e.g. 1/4")
    return index, count


def shard_of(video_id: str | int, count: int) -> int:
    """The shard (1..count) an id belongs to: a stable hash, the same on every host."""
    digest = hashlib.blake2b(str(video_id).strip().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


def shard_filter(ids: Iterable[_Id], index: int, count: int) -> Iterator[_Id]:
    """Lazily keep the ids of shard ``index`` of ``count`` (1-based, as in ``--shard 2/4``).

    Every id lands in exactly one shard, whatever the file order or host, and duplicates
    land in the same shard, so N workers given shards 1/N .. N/N split one ids file exactly.
    """
    if not 1 <= index <= count:
        raise ValueError(f"invalid shard {index}/{count}: expected 1 <= index <= count")
    return (i for i in ids if shard_of(i, count) == index)
