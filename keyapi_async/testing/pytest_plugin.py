"""pytest plugin (registered through the ``pytest11`` entry point).

Provides the ``fake_keyapi`` fixture: a started ``FakeKeyAPI`` with default
settings, stopped after the test.  The fixture needs pytest-asyncio; without
it the plugin loads and simply registers nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

from keyapi_async.testing.server import FakeKeyAPI

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def fake_keyapi() -> AsyncIterator[FakeKeyAPI]:
        """A running ``FakeKeyAPI()`` (key "test-key", unlimited), stopped afterwards."""
        async with FakeKeyAPI() as server:
            yield server
