"""keyapi-async: the asyncio SDK for KeyAPI's TikTok video analytics.

Quick start::

    import keyapi_async as ka

    async with ka.KeyAPIClient() as client:          # key from KEYAPI_API_KEY
        videos = await client.video_details(["7117191641181555995"])

See README.md and docs/ for the guide.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .app.caching import Cache, MemoryCache
from .app.events import (
    AttemptFinished,
    AttemptStarted,
    BatchCoalesced,
    CacheHit,
    Event,
    PacingChanged,
    RateLimited,
    Retrying,
)
from .app.otel import OpenTelemetryHook
from .app.redis_cache import RedisCache
from .bulk.backfill import RangeReport, crawl_ranking_range, ranking_dates
from .bulk.detail_crawl import crawl_video_details
from .bulk.ranking_crawl import crawl_video_ranking
from .bulk.report import CrawlReport
from .bulk.sinks.base import MissingExtraError, Sink, expand_date
from .bulk.sinks.csv import CsvSink
from .bulk.sinks.jsonl import JsonlSink
from .bulk.sinks.parquet import ParquetSink
from .client.attempts import ClientStats
from .client.client import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_QPS,
    DEFAULT_RATE_LIMIT_PATIENCE,
    DEFAULT_TIMEOUT,
    KeyAPIClient,
)
from .client.details import DetailBatch
from .client.ranking import RankingPage
from .limiting.adaptive import AdaptiveRate
from .limiting.base import RateLimiter
from .limiting.local import LocalRateLimiter
from .pipeline.decoding import RawResponse
from .pipeline.errors import (
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
from .pipeline.models import (
    LINEAGE_FIELDS,
    ProductCategory,
    RankedVideo,
    RankType,
    VideoDetail,
    VideoRankField,
)
from .pipeline.retrying import RetryPolicy

if TYPE_CHECKING:  # at run time, loaded on first use by __getattr__ below
    from .bulk.sinks.postgres import PostgresSink
    from .limiting.redis import RedisRateLimiter

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
        from .limiting.redis import RedisRateLimiter

        return RedisRateLimiter
    if name == "PostgresSink":
        from .bulk.sinks.postgres import PostgresSink

        return PostgresSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
