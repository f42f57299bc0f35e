"""Putting one request on the wire: one aiohttp session per client, bytes back.

The transport knows nothing of retries, limits or JSON. It turns every network failure
into :class:`APIConnectionError` and returns the status, the raw body and Retry-After.
The API key lives in a :class:`Secret` and is written only into the Authorization header.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from ._version import __version__
from .errors import APIConnectionError, ConfigurationError

__all__ = ["RawResponse", "Secret", "Transport", "check_base_url"]

logger = logging.getLogger("keyapi_async")

USER_AGENT: Final = f"keyapi-async/{__version__}"


class Secret:
    """Holds the API key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the Authorization header only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("the API key is not picklable")


@dataclass(frozen=True)
class RawResponse:
    """What came back: HTTP status, body bytes, and Retry-After in seconds if sent."""

    status: int
    body: bytes
    retry_after: float | None


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None if absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> str:
    """Validate a base URL (http or https, with a host); warn on plain http off loopback."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"invalid base_url {base_url!r}: expected http(s)://host[:port]"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        message = (
            f"base_url {base_url!r} is plain http to a non-loopback host: the API key "
            "would cross the network unencrypted. Use https."
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    return base_url.rstrip("/")


class Transport:
    """One aiohttp ClientSession, created on first use inside the running loop."""

    def __init__(self, base_url: str, api_key: Secret, timeout: float) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def is_open(self) -> bool:
        """Whether a session exists and has not been closed."""
        return self._session is not None and not self._session.closed

    def _open(self) -> aiohttp.ClientSession:
        # limit=0: the client's own in-flight cap bounds connections, so a permitted
        # request never queues inside aiohttp and then bursts out with others.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={
                "Authorization": f"Bearer {self._api_key.reveal()}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            raise_for_status=False,
        )
        # aiohttp silently resends an idempotent request once when a kept-alive connection
        # drops. That resend would bypass the rate limiter and the retry count (and may
        # spend a second credit), so every attempt must be ours. aiohttp's own test_utils
        # switch it off the same way; there is no public option.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self._session

    async def get(self, path: str, params: dict[str, str]) -> RawResponse:
        """GET ``base_url + path``; network failures raise APIConnectionError."""
        session = self._session if self.is_open else self._open()
        assert session is not None
        try:
            async with session.get(self.base_url + path, params=params) as resp:
                body = await resp.read()
                return RawResponse(
                    resp.status, body, parse_retry_after(resp.headers.get("Retry-After"))
                )
        except asyncio.TimeoutError:
            raise APIConnectionError(
                f"no complete answer within {self._timeout.total:g}s from {path}"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            # Message from the exception's type and text only: never its request headers.
            raise APIConnectionError(f"{type(exc).__name__}: {exc} ({path})") from None

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
