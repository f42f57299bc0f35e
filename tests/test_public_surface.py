"""Nothing public moved: the names users import keep importing from where they did.

The lists below are ``keyapi_async.__all__`` and ``keyapi_async.testing.__all__`` as they were
on main before the modules moved into subpackages (issue 15), written out so that a name
dropped from ``__all__`` fails here too. The docs' names are read from the pages themselves.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import keyapi_async as ka
import keyapi_async.testing as kat

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

PUBLIC = [
    "DEFAULT_BASE_URL", "DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_MAX_RETRIES", "DEFAULT_QPS",
    "DEFAULT_RATE_LIMIT_PATIENCE", "DEFAULT_TIMEOUT", "LINEAGE_FIELDS", "APIConnectionError",
    "APIUnreachableError", "AdaptiveRate", "AttemptFinished", "AttemptStarted",
    "AuthenticationError", "BadRequestError", "BatchCoalesced", "Cache", "CacheHit",
    "ClientStats", "ConfigurationError", "CrawlReport", "CreditBudgetExceededError", "CsvSink",
    "DecodeError", "DetailBatch", "EndpointNotFoundError", "Event", "InvalidParameterError",
    "JsonlSink", "KeyAPIClient", "KeyAPIError", "LocalRateLimiter", "MalformedAnswerError",
    "MemoryCache", "MissingExtraError", "OpenTelemetryHook", "OutputError", "OutputLockedError",
    "OutputWriteError", "PacingChanged", "ParquetSink", "PermissionDeniedError", "PostgresSink",
    "ProductCategory", "QuotaExceededError", "RangeReport", "RankType", "RankedVideo",
    "RankingPage", "RateLimitError", "RateLimited", "RateLimiter", "RateLimiterUnavailableError",
    "RawResponse", "RedirectError", "RedisCache", "RedisRateLimiter", "ResponseTooLargeError",
    "RetryPolicy", "Retrying", "ServerError", "Sink", "VideoDetail", "VideoRankField",
    "__version__", "crawl_ranking_range", "crawl_video_details", "crawl_video_ranking",
    "expand_date", "ranking_dates",
]
TESTING = ["DEFAULT_API_KEY", "FakeKeyAPI", "Faults", "RequestRecord", "ServerStats"]

# module paths that round one's released docs named (git show d94efb9~1:docs/...): kept
RELEASED_PATHS = [
    # everything round one's keyapi_async.redis_limiter exported (its __all__)
    *(f"keyapi_async.redis_limiter.{name}" for name in (
        "KEY_PREFIX", "RateLimiterUnavailableError", "RedisRateLimiter", "budget_name",
        "parse_shard", "shard_filter", "shard_of",
    )),
    "keyapi_async.idset.CompactIdSet",
    "keyapi_async.cli.main",  # the console script's entry point
    "keyapi_async.testing.pytest_plugin",  # the pytest11 entry point
]


def _resolve(dotted: str) -> Any:
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_public_name_imports_from_the_package() -> None:
    assert sorted(set(PUBLIC) - set(ka.__all__)) == []
    for name in PUBLIC:
        assert getattr(ka, name) is not None, name
    namespace: dict[str, Any] = {}
    exec(f"from keyapi_async import {', '.join(PUBLIC)}", namespace)  # the import statement
    assert namespace["KeyAPIClient"] is ka.KeyAPIClient


def test_every_testing_name_imports_from_testing() -> None:
    assert sorted(set(TESTING) - set(kat.__all__)) == []
    namespace: dict[str, Any] = {}
    exec(f"from keyapi_async.testing import {', '.join(TESTING)}", namespace)
    assert namespace["FakeKeyAPI"] is kat.FakeKeyAPI


@pytest.mark.parametrize("path", RELEASED_PATHS)
def test_released_module_paths_still_import(path: str) -> None:
    assert _resolve(path) is not None


def test_released_paths_are_the_same_objects() -> None:
    from keyapi_async.bulk.idset import CompactIdSet
    from keyapi_async.idset import CompactIdSet as Released
    from keyapi_async.redis_limiter import RedisRateLimiter

    assert RedisRateLimiter is ka.RedisRateLimiter
    assert Released is CompactIdSet


def test_optional_names_stay_lazy() -> None:
    code = (
        "import sys, keyapi_async as ka\n"
        "lazy = ('keyapi_async.bulk.sinks.postgres', 'keyapi_async.limiting.redis', 'redis')\n"
        "before = [m for m in lazy if m in sys.modules]\n"
        "ka.PostgresSink, ka.RedisRateLimiter\n"
        "print(before, [m for m in lazy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split("] [")[0] == "["  # nothing loaded before first use
    assert "keyapi_async.limiting.redis" in done.stdout  # and loaded on first use


_DIRECTIVE = re.compile(r"^::: (\S+)$", re.MULTILINE)
_KA = re.compile(r"\bka\.([A-Za-z_]\w*)")
_FROM = re.compile(
    r"^\s*from (keyapi_async(?:\.\w+)*) import (\([^)]*\)|[^\n]+)", re.MULTILINE
)
_MENTION = re.compile(r"`(keyapi_async(?:\.\w+)+)`")


def _documented() -> set[str]:
    """Every keyapi_async path the README and the docs name."""
    names: set[str] = set()
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        names.update(_DIRECTIVE.findall(text))
        names.update(_MENTION.findall(text))
        names.update(f"keyapi_async.{n}" for n in _KA.findall(text))
        for module, imported in _FROM.findall(text):
            for item in imported.strip("()").split(","):
                item = item.split("#")[0].split(" as ")[0].strip()
                if item:
                    names.add(f"{module}.{item}")
    return names


def test_the_docs_scan_finds_the_documented_names() -> None:
    documented = _documented()
    assert "keyapi_async.KeyAPIClient" in documented  # ka.X
    assert "keyapi_async.testing.FakeKeyAPI" in documented  # from keyapi_async.testing import X
    assert "keyapi_async.PostgresSink" in documented  # ::: directive
    assert len(documented) > 60


@pytest.mark.parametrize("path", sorted(_documented()))
def test_every_documented_name_resolves(path: str) -> None:
    assert _resolve(path) is not None
