"""keyapi-async: the asyncio SDK for KeyAPI's TikTok video analytics.

Quick start::

    import keyapi_async as ka

    async with ka.KeyAPIClient() as client:          # key from KEYAPI_API_KEY
        videos = await client.video_details(["7117191641181555995"])

See README.md and docs/ for the guide.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .client import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_QPS,
    DEFAULT_TIMEOUT,
    ClientStats,
    DetailBatch,
    KeyAPIClient,
    RankingPage,
)
from .crawl import CrawlReport, crawl_video_details, crawl_video_ranking
from .errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DecodeError,
    InvalidParameterError,
    KeyAPIError,
    OutputError,
    OutputLockedError,
    OutputWriteError,
    QuotaExceededError,
    RateLimitError,
    RateLimiterUnavailableError,
    ServerError,
)
from .limiting import LocalRateLimiter, RateLimiter
from .models import ProductCategory, RankedVideo, RankType, VideoDetail, VideoRankField
from .retrying import RetryPolicy
from .sinks import CsvSink, JsonlSink, MissingExtraError, ParquetSink, Sink

if TYPE_CHECKING:  # at run time, loaded on first use by __getattr__ below
    from .redis_limiter import RedisRateLimiter

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_QPS",
    "DEFAULT_TIMEOUT",
    "APIConnectionError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStats",
    "ConfigurationError",
    "CrawlReport",
    "CsvSink",
    "DecodeError",
    "DetailBatch",
    "InvalidParameterError",
    "JsonlSink",
    "KeyAPIClient",
    "KeyAPIError",
    "LocalRateLimiter",
    "MissingExtraError",
    "OutputError",
    "OutputLockedError",
    "OutputWriteError",
    "ParquetSink",
    "ProductCategory",
    "QuotaExceededError",
    "RankType",
    "RankedVideo",
    "RankingPage",
    "RateLimitError",
    "RateLimiter",
    "RateLimiterUnavailableError",
    "RedisRateLimiter",
    "RetryPolicy",
    "ServerError",
    "Sink",
    "VideoDetail",
    "VideoRankField",
    "__version__",
    "crawl_video_details",
    "crawl_video_ranking",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing keyapi_async never imports the optional redis extra.
    if name == "RedisRateLimiter":
        from .redis_limiter import RedisRateLimiter

        return RedisRateLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
