"""keyapi-async: the asyncio SDK for KeyAPI's TikTok video analytics.

Quick start::

    import keyapi_async as ka

    async with ka.KeyAPIClient() as client:          # key from KEYAPI_API_KEY
        videos = await client.video_details(["7117191641181555995"])

See README.md and docs/ for the guide.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .adaptive import AdaptiveRate
from .backfill import RangeReport, crawl_ranking_range, ranking_dates
from .caching import Cache, MemoryCache
from .client import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_QPS,
    DEFAULT_RATE_LIMIT_PATIENCE,
    DEFAULT_TIMEOUT,
    ClientStats,
    DetailBatch,
    KeyAPIClient,
    RankingPage,
)
from .crawl import CrawlReport, crawl_video_details, crawl_video_ranking
from .decoding import RawResponse
from .errors import (
    APIConnectionError,
    APIUnreachableError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    CreditBudgetExceededError,
    DecodeError,
    EndpointNotFoundError,
    InvalidParameterError,
    KeyAPIError,
    MalformedAnswerError,
    OutputError,
    OutputLockedError,
    OutputWriteError,
    PermissionDeniedError,
    ProxyAuthenticationError,
    QuotaExceededError,
    RateLimitError,
    RateLimiterUnavailableError,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
)
from .events import (
    AttemptFinished,
    AttemptStarted,
    BatchCoalesced,
    CacheHit,
    Event,
    PacingChanged,
    RateLimited,
    Retrying,
)
from .limiting import LocalRateLimiter, RateLimiter
from .models import (
    LINEAGE_FIELDS,
    ProductCategory,
    RankedVideo,
    RankType,
    VideoDetail,
    VideoRankField,
)
from .otel import OpenTelemetryHook
from .redis_cache import RedisCache
from .retrying import RetryPolicy
from .sinks import CsvSink, JsonlSink, MissingExtraError, ParquetSink, Sink, expand_date

if TYPE_CHECKING:  # at run time, loaded on first use by __getattr__ below
    from .postgres import PostgresSink
    from .redis_limiter import RedisRateLimiter

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_QPS",
    "DEFAULT_RATE_LIMIT_PATIENCE",
    "DEFAULT_TIMEOUT",
    "LINEAGE_FIELDS",
    "APIConnectionError",
    "APIUnreachableError",
    "AdaptiveRate",
    "AttemptFinished",
    "AttemptStarted",
    "AuthenticationError",
    "BadRequestError",
    "BatchCoalesced",
    "Cache",
    "CacheHit",
    "ClientStats",
    "ConfigurationError",
    "CrawlReport",
    "CreditBudgetExceededError",
    "CsvSink",
    "DecodeError",
    "DetailBatch",
    "EndpointNotFoundError",
    "Event",
    "InvalidParameterError",
    "JsonlSink",
    "KeyAPIClient",
    "KeyAPIError",
    "LocalRateLimiter",
    "MalformedAnswerError",
    "MemoryCache",
    "MissingExtraError",
    "OpenTelemetryHook",
    "OutputError",
    "OutputLockedError",
    "OutputWriteError",
    "PacingChanged",
    "ParquetSink",
    "PermissionDeniedError",
    "PostgresSink",
    "ProductCategory",
    "ProxyAuthenticationError",
    "QuotaExceededError",
    "RangeReport",
    "RankType",
    "RankedVideo",
    "RankingPage",
    "RateLimitError",
    "RateLimited",
    "RateLimiter",
    "RateLimiterUnavailableError",
    "RawResponse",
    "RedirectError",
    "RedisCache",
    "RedisRateLimiter",
    "ResponseTooLargeError",
    "RetryPolicy",
    "Retrying",
    "ServerError",
    "Sink",
    "VideoDetail",
    "VideoRankField",
    "__version__",
    "crawl_ranking_range",
    "crawl_video_details",
    "crawl_video_ranking",
    "expand_date",
    "ranking_dates",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing keyapi_async never imports the optional redis extra (nor
    # PostgresSink's module; asyncpg itself is imported only when a sink is created).
    if name == "RedisRateLimiter":
        from .redis_limiter import RedisRateLimiter

        return RedisRateLimiter
    if name == "PostgresSink":
        from .postgres import PostgresSink

        return PostgresSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
