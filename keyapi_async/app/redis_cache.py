"""A cache shared through Redis: every process and host using one key sees one set of answers.

:class:`RedisCache` has :class:`~keyapi_async.app.caching.MemoryCache`'s interface. Values are
msgpack-encoded with msgspec and decoded with one typed Decoder per kind, made once.
Freshness is Redis's own expiry (``SET ... PX ttl``), on the Redis server's clock: an
entry is never served past ``ttl``, whichever worker stored it. Size is bounded by the
server (``maxmemory`` with ``maxmemory-policy allkeys-lru`` gives the LRU bound).

A cache is an optimisation, not a source of truth: when Redis cannot be reached, a
lookup is a miss and a store is skipped (counted in ``errors``; a WARNING when Redis goes
away, an INFO line when it comes back),
so the app keeps working and only pays for what it could have saved. Needs the ``redis``
extra (``pip install 'keyapi-async[redis]'``); importing this module does not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from ..pipeline.errors import ConfigurationError
from .caching import DEFAULT_TTL, CacheKind, check_ttl

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["CACHE_PREFIX", "RedisCache"]

logger = logging.getLogger("keyapi_async")

#: Prefix of every key: ``CACHE_PREFIX + kind + ":" + key``. The version part changes
#: when the stored layout does, so an upgraded worker never decodes an older layout.
CACHE_PREFIX: Final = "keyapi_async:cache:v1:"
#: Seconds to wait for Redis to connect or answer before a lookup counts as a miss.
DEFAULT_CACHE_TIMEOUT: Final = 1.0

T = TypeVar("T")


class RedisCache:
    """A :class:`~keyapi_async.app.caching.Cache` in Redis, shared by every worker using it.

    Guarantees: an entry is served only within ``ttl`` seconds of being stored (Redis
    expiry, server clock); values decode to the same records that were stored (records,
    negative entries, ranking pages); a Redis failure never fails the caller (a miss).

    Use ``async with RedisCache(url) as cache:`` or call :meth:`aclose`; the client does
    not close a cache it was given. Each event loop needs its own instance.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` or ``unix://``.
        ttl: Seconds an entry stays fresh (default one hour, as MemoryCache).
        prefix: Key prefix, to keep apart caches sharing one Redis database.
        timeout: Seconds to connect to and wait for Redis before treating it as down.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = DEFAULT_TTL,
        prefix: str = CACHE_PREFIX,
        timeout: float = DEFAULT_CACHE_TIMEOUT,
    ) -> None:
        self._ttl = check_ttl(ttl)
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigurationError(f"timeout must be a positive number, got {timeout!r}")
        try:
            import redis.asyncio
            import redis.exceptions
        except ImportError:
            raise ConfigurationError(
                "RedisCache needs the redis package: pip install 'keyapi-async[redis]'"
            ) from None
        try:
            # Connects lazily, on the first command; no retries: a miss is cheaper than a wait.
            self._redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:
            # Raised for a malformed URL; the message names the scheme, not the password.
            raise ConfigurationError(f"invalid redis url: {exc}") from None
        self.prefix = prefix
        self._ttl_ms = max(1, round(self._ttl * 1000))
        self._failures = (redis.exceptions.RedisError, OSError)
        self._encoder = msgspec.msgpack.Encoder()
        self._decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}
        #: Redis calls that failed (each one a miss or a skipped store).
        self.errors = 0
        self._down = False

    @property
    def ttl(self) -> float:
        """Seconds an entry stays fresh."""
        return self._ttl

    def _decoder(self, kind: CacheKind[T]) -> msgspec.msgpack.Decoder[T | None]:
        decoder = self._decoders.get(kind.name)
        if decoder is None:
            decoder = self._decoders[kind.name] = msgspec.msgpack.Decoder(kind.type | None)
        return decoder

    def _key(self, kind: CacheKind[Any], key: str) -> str:
        return f"{self.prefix}{kind.name}:{key}"

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        # Once per outage, not per call: a busy app would flood its log. Type and text
        # only: redis-py's messages name host and port, never the password.
        level = logging.DEBUG if self._down else logging.WARNING
        self._down = True
        logger.log(level, "Redis cache %s failed (%s: %s); carrying on without the cache",
                   what, type(exc).__name__, exc)

    def _ok(self) -> None:
        if self._down:
            self._down = False
            logger.info("Redis cache reachable again")

    async def get_many(self, kind: CacheKind[T], keys: Sequence[str]) -> dict[str, T | None]:
        """The fresh entries among ``keys``, in one MGET; all misses if Redis is down."""
        if not keys:
            return {}
        try:
            values: list[Any] = await self._redis.mget(
                [self._key(kind, key) for key in keys]
            )
        except self._failures as exc:
            self._failed("lookup", exc)
            return {}
        self._ok()
        decoder = self._decoder(kind)
        found: dict[str, T | None] = {}
        for key, value in zip(keys, values, strict=True):
            if value is None:
                continue
            try:
                found[key] = decoder.decode(value)
            except msgspec.DecodeError:
                # Written by something else under our prefix: a miss, and overwritten soon.
                logger.debug("Redis cache entry %s does not decode; ignored", key)
        return found

    async def set_many(self, kind: CacheKind[T], entries: Mapping[str, T | None]) -> None:
        """Store ``entries`` with a ``ttl`` expiry, in one pipelined round trip."""
        if not entries:
            return
        encode = self._encoder.encode
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value in entries.items():
                    pipe.set(self._key(kind, key), encode(value), px=self._ttl_ms)
                await pipe.execute()
        except self._failures as exc:
            self._failed("store", exc)
        else:
            self._ok()

    async def aclose(self) -> None:
        """Release the Redis connections. The cache cannot be used afterwards."""
        await self._redis.aclose()

    async def __aenter__(self) -> RedisCache:
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
        return f"RedisCache(ttl={self._ttl:g}, prefix={self.prefix!r})"
