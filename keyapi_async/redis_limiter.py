"""A rate limiter shared through Redis: every process and host using one key, one budget.

:class:`RedisRateLimiter` is a :class:`~keyapi_async.limiting.RateLimiter` whose schedule
lives in Redis, so N workers (processes or machines) sharing a ``name`` together start at
most ``qps`` requests in any one-second window. Needs the ``redis`` extra
(``pip install 'keyapi-async[redis]'``); importing this module does not.

The schedule is a zero-burst GCRA kept in one Redis hash, driven by one Lua script that
reads Redis ``TIME``: the Redis server's clock is the only clock, so the workers' clocks
never matter. Also here: :func:`shard_filter` and :func:`parse_shard`, which split one ids
file between N workers deterministically.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .errors import ConfigurationError, RateLimiterUnavailableError
from .limiting import DEFAULT_HEADROOM

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "KEY_PREFIX",
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

# One script, three modes, all on the hash KEYS[1] with fields
#   tat    - the theoretical arrival time: the first free slot, in Redis-clock microseconds
#   resume - the end of the latest pause (penalize), in Redis-clock microseconds
# ARGV[1] is the mode:
#   reserve  ARGV[2]=interval_us          -> {slot_us, delay_us}: the slot taken, and how
#                                            long the caller sleeps until it
#   confirm  ARGV[2]=interval_us ARGV[3]=slot_us
#                                         -> {slot_us, 0} if no pause covers that slot (go);
#                                            else a fresh reservation, as 'reserve'
#   pause    ARGV[2]=seconds_us           -> {resume_us, 0}
# Times are integral microseconds, exact in Lua's doubles (about 2^50 today), and written
# with %d because Lua's tostring keeps only 14 significant digits. The key expires once
# both times are in the past, when an absent key means the same thing: nothing lingers.
_SCRIPT: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local key = KEYS[1]
local mode = ARGV[1]
local tat = tonumber(redis.call('HGET', key, 'tat')) or 0
local resume = tonumber(redis.call('HGET', key, 'resume')) or 0

local function store()
  redis.call('HSET', key, 'tat', string.format('%d', tat),
             'resume', string.format('%d', resume))
  local horizon = math.max(tat, resume) - now
  redis.call('PEXPIRE', key, math.floor(horizon / 1000) + 2)
end

if mode == 'pause' then
  resume = math.max(resume, now + tonumber(ARGV[2]))
  tat = math.max(tat, resume)
  store()
  return {resume, 0}
end
if mode == 'confirm' then
  local slot = tonumber(ARGV[3])
  if slot >= resume then
    return {slot, 0}
  end
end
local slot = math.max(tat, now, resume)
tat = slot + tonumber(ARGV[2])
store()
return {slot, slot - now}
"""

_Id = TypeVar("_Id", str, int)


def _redis_error_types() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.RedisError, OSError)


class RedisRateLimiter:
    """Paces request starts across every process that shares ``name``, through Redis.

    Guarantee, for all workers using the same Redis and ``name`` together: consecutive
    permits are at least ``1 / (qps * (1 - headroom))`` seconds apart on the Redis server's
    clock, with no burst at start-up or after a pause. So any one-second window holds at
    most ``qps`` starts (``ceil(qps)`` for a fractional qps), and the ``headroom`` share of
    each second absorbs the jitter between Redis and the workers, as in
    :class:`~keyapi_async.limiting.LocalRateLimiter`. Every worker sharing a name must use
    the same ``qps``.

    Each :meth:`acquire` reserves the next slot with one atomic script call and sleeps
    once until it; on waking it asks Redis once more, so a pause set meanwhile by
    :meth:`penalize` (a 429 seen by any worker) holds back slots reserved before it.

    If Redis cannot be reached (``timeout`` seconds per attempt, plus redis-py's few quick
    reconnects), :meth:`acquire` raises :class:`RateLimiterUnavailableError` (fatal): a
    crawl stops cleanly and can be resumed; it never falls back to an unshared budget.

    Use ``async with RedisRateLimiter(...) as limiter:`` or call :meth:`aclose`; the
    client does not close a limiter it was given. Each process (and event loop) needs its
    own instance. Needs ``pip install 'keyapi-async[redis]'``.

    Args:
        redis_url: ``redis://[user:password@]host:port/db``, ``rediss://`` or ``unix://``.
        name: The shared budget's name: use one per API key.
        qps: Request starts per second, across all workers together.
        headroom: Fraction of the budget left unused to absorb jitter (default 2 %).
        timeout: Seconds to connect to and wait for Redis before giving up.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        name: str,
        qps: float,
        headroom: float = DEFAULT_HEADROOM,
        timeout: float = DEFAULT_REDIS_TIMEOUT,
    ) -> None:
        if not (isinstance(qps, (int, float)) and math.isfinite(qps) and qps > 0):
            raise ConfigurationError(f"qps must be a positive number, got {qps!r}")
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
        self._qps = float(qps)
        self.name = name
        self.key = KEY_PREFIX + name
        #: Seconds between permits; rounded up to whole microseconds, never faster.
        self.interval_us = math.ceil(1_000_000 / (self._qps * (1.0 - headroom)))
        self.interval = self.interval_us / 1_000_000
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
        """The configured budget in request starts per second, across all workers."""
        return self._qps

    async def _call(self, *args: int | str) -> tuple[int, int]:
        try:
            reply: Any = await self._script(keys=[self.key], args=args)
        except self._errors as exc:
            raise RateLimiterUnavailableError(
                f"shared rate limiter {self.name!r} unavailable: {type(exc).__name__}: {exc}"
            ) from exc
        return int(reply[0]), int(reply[1])

    async def reserve(self) -> tuple[int, int]:
        """Reserve the next slot: ``(slot, delay)`` in Redis-clock microseconds.

        The building block of :meth:`acquire`, public for tests and diagnostics; the slot
        is taken whether or not the caller then uses it.
        """
        return await self._call("reserve", self.interval_us)

    async def confirm(self, slot: int) -> tuple[int, int]:
        """Check a reserved ``slot`` on waking: ``(slot, 0)`` if no pause covers it (go);
        else a fresh reservation after the pause, as :meth:`reserve` returns."""
        return await self._call("confirm", self.interval_us, slot)

    async def acquire(self) -> None:
        """Reserve the next shared slot and sleep until it, honouring any shared pause."""
        async with self._lock:
            slot, delay = await self.reserve()
            while delay > 0:
                await asyncio.sleep(delay / 1_000_000)
                # One more call, not a poll: it returns at once unless a pause was set while
                # we slept, in which case it reserves a slot after the pause.
                slot, delay = await self.confirm(slot)

    async def penalize(self, seconds: float) -> None:
        """Start nothing, in any worker, for ``seconds`` from now; longer pauses win."""
        await self._call("pause", max(0, math.ceil(seconds * 1_000_000)))

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
        return (
            f"RedisRateLimiter(name={self.name!r}, qps={self._qps:g}, "
            f"interval={self.interval:.4f}s)"
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
