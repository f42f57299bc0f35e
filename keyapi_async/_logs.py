"""``KEYAPI_LOG=debug|info`` turns the SDK's logging on, as ``OPENAI_LOG`` does for openai.

The SDK logs to the ``keyapi_async`` logger and, like any library, configures nothing by
default. :func:`setup_logging` (called by the client when it is created) reads the
variable and sets that logger's level; when the application has not configured logging
itself (the root logger has no handler), it also adds one handler writing to stderr, so
``KEYAPI_LOG=debug python app.py`` shows the SDK's records with no code change. It never
touches other loggers. Calling it again changes nothing more. The SDK's records never
carry the API key.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from typing import Final

__all__ = ["ENV_VAR", "setup_logging"]

#: The environment variable read.
ENV_VAR: Final = "KEYAPI_LOG"
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}
_FORMAT: Final = "[%(asctime)s - %(name)s:%(lineno)d - %(levelname)s] %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler setup_logging adds (a class of its own, so it is added once)."""


def setup_logging(environ: Mapping[str, str] | None = None) -> None:
    """Apply ``KEYAPI_LOG`` from ``environ`` (default ``os.environ``); see the module.

    An unset or empty variable does nothing; a value other than ``debug`` or ``info``
    (any case) is ignored with a warning naming the accepted values.
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower()
    if not value:
        return
    level = _LEVELS.get(value)
    if level is None:
        warnings.warn(
            f"{ENV_VAR}={value!r} is ignored: use 'debug' or 'info'", UserWarning, stacklevel=2
        )
        return
    logger = logging.getLogger("keyapi_async")
    logger.setLevel(level)
    if logging.getLogger().handlers or any(
        isinstance(h, _StderrHandler) for h in logger.handlers
    ):
        return  # the application's handlers (or ours, added before) will show the records
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
