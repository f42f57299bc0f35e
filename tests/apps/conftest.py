"""Fixtures for the app-layer tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def sdk_logger() -> Iterator[logging.Logger]:
    """The ``keyapi_async`` logger, its level and handlers restored after the test."""
    logger = logging.getLogger("keyapi_async")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers
