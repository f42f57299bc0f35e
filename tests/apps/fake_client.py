"""The client the app-layer tests point at a FakeKeyAPI: the leak-canary key, a high qps
and instant backoff (so retries cost no test time)."""

from __future__ import annotations

from typing import Any

from conftest import API_KEY as CANARY

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

__all__ = ["CANARY", "DETAIL", "FAST", "RANKING", "client"]

DETAIL = "/v1/tiktok/video/detail/analytics"
RANKING = "/v1/tiktok/video/ranking/analytics"
FAST = ka.RetryPolicy(base_delay=0.001, max_delay=0.005)


def client(fake: FakeKeyAPI, **kwargs: Any) -> ka.KeyAPIClient:
    """A client for ``fake`` with the canary key; ``kwargs`` override the defaults."""
    kwargs.setdefault("qps", 1000)
    kwargs.setdefault("retry_policy", FAST)
    return ka.KeyAPIClient(CANARY, base_url=fake.url, **kwargs)
