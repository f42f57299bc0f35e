"""Fixtures for the fake-server tests: a plain aiohttp session and a request helper.

The fake server is exercised over real sockets with plain aiohttp, never with
the SDK client, so these tests pin down the server's own behaviour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from keyapi_async.testing import FakeKeyAPI

from .fake_api_helpers import DETAIL, Get, Reply


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def get(session: aiohttp.ClientSession) -> Get:
    """``await get(server, path, params, key="test-key")``; key=None sends no header.

    ``timeout`` bounds the whole request (None: no limit).
    """

    async def _get(
        server: FakeKeyAPI,
        path: str = DETAIL,
        params: dict[str, str] | None = None,
        key: str | None = "test-key",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        async with session.get(
            server.url + path,
            params=params,
            headers=all_headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())

    return _get
