"""Shared fixtures: a recognizable API key, a clean environment, and mocked HTTP."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any
from unittest import mock

import aioresponses.core
import pytest
from aiohttp import ClientResponse

import keyapi_async as ka

#: Recognizable, so a leak anywhere (logs, reprs, tracebacks, files) can be searched for.
API_KEY = "sk-live-LEAKCANARY-7f3a9c2e51d04b6b"

DETAIL_URL = re.compile(r"^https://api\.test/v1/tiktok/video/detail/analytics(\?.*)?$")
RANKING_URL = re.compile(r"^https://api\.test/v1/tiktok/video/ranking/analytics(\?.*)?$")


class _CompatResponse(ClientResponse):
    """aioresponses 0.7.x builds ClientResponse without the `stream_writer` that aiohttp
    3.14 requires (pnuckowski/aioresponses#289); supply a stub until it is fixed upstream."""

    _needs_writer = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        if self._needs_writer:
            kwargs.setdefault("stream_writer", mock.Mock(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own key, URL or proxy."""
    monkeypatch.delenv("KEYAPI_API_KEY", raising=False)
    monkeypatch.delenv("KEYAPI_BASE_URL", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mock_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses.aioresponses]:
    """aioresponses, made to work with aiohttp 3.14."""
    monkeypatch.setattr(aioresponses.core, "ClientResponse", _CompatResponse)
    with aioresponses.aioresponses() as m:
        yield m


FAST_RETRIES = ka.RetryPolicy(base_delay=0.001, max_delay=0.005)


def make_client(**kwargs: Any) -> ka.KeyAPIClient:
    """A client against the mocked https://api.test with instant backoff."""
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("base_url", "https://api.test")
    kwargs.setdefault("qps", 1000)
    kwargs.setdefault("retry_policy", FAST_RETRIES)
    return ka.KeyAPIClient(**kwargs)
