"""Compatibility path: round one's docs named ``keyapi_async.redis_limiter.RedisRateLimiter``.

The limiter now lives in ``keyapi_async.limiting.redis``; prefer ``ka.RedisRateLimiter``.
Importing this module imports the optional ``redis`` package, as it always did.
"""

from .limiting.redis import RedisRateLimiter

__all__ = ["RedisRateLimiter"]
