"""Compatibility path: round one's docs named ``keyapi_async.redis_limiter``.

The limiter now lives in ``keyapi_async.limiting.redis``; prefer ``ka.RedisRateLimiter``.
Every name this module exported in round one still imports from here. Importing it
imports the optional ``redis`` package, as it always did.
"""

from .limiting.redis import (
    KEY_PREFIX,
    STATE_RETENTION,
    RateLimiterUnavailableError,
    RedisRateLimiter,
    budget_name,
    parse_shard,
    shard_filter,
    shard_of,
)

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
