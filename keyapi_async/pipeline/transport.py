"""Putting one request on the wire: one aiohttp session per client and event loop, bytes back.

The transport knows nothing of retries, limits or JSON. It returns the status, the body and
Retry-After, or raises the typed error of an answer it will not hand on:

* no answer at all (refused, reset, timed out before the status line):
  :class:`APIConnectionError` with ``status`` None, or :class:`APIUnreachableError` once so
  many came in a row that nothing can succeed (:mod:`keyapi_async.pipeline.reachability`); a body
  that broke off or cannot be decompressed after the status came: the same, with the status;
* a 3xx: :class:`RedirectError`; redirects are never followed (the API never redirects, and
  following one would carry the key elsewhere and cost several requests per permit);
* a 407 from a proxy, to an https tunnel's CONNECT or to a plain-http request:
  :class:`ProxyAuthenticationError` (fatal: every request through it would be refused);
* a body over ``max_response_bytes``, as sent or decompressed: :class:`ResponseTooLargeError`
  (see :mod:`keyapi_async.pipeline.bodies`; memory stays bounded).

Server text enters the SDK here and only here, so the API key (and a proxy password) is
removed here, from bodies, headers and network error texts (:class:`Redactor`). No error
raised here chains to an aiohttp exception, whose ``request_info`` holds the request
headers: they are raised outside ``except`` blocks, so neither ``__cause__`` nor
``__context__`` is set.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import ipaddress
import logging
import time
import urllib.request
import warnings
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from .._version import __version__
from .bodies import ACCEPT_ENCODING, BodyDamaged, BodyTooLarge, read_body
from .errors import (
    APIConnectionError,
    APIUnreachableError,
    ConfigurationError,
    KeyAPIError,
    ProxyAuthenticationError,
    RedirectError,
    ResponseTooLargeError,
)
from .reachability import Reachability
from .redaction import Redactor

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "HttpResponse",
    "Proxy",
    "Secret",
    "Transport",
    "check_api_key",
    "check_base_url",
    "closed_error",
    "resolve_proxy",
]

logger = logging.getLogger("keyapi_async")

USER_AGENT: Final = f"keyapi-async/{__version__}"
#: Largest answer accepted, in bytes (a 10-record answer is about 10 KB).
DEFAULT_MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024


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
class HttpResponse:
    """What came back: HTTP status, body bytes (decompressed, key removed), Retry-After."""

    status: int
    body: bytes
    retry_after: float | None


@dataclass(frozen=True)
class Proxy:
    """An HTTP(S) proxy: its URL without credentials, and the credentials apart."""

    url: str
    #: Where it was configured: ``proxy=`` or the environment variable's name.
    source: str
    #: The Proxy-Authorization header value, if the URL held credentials.
    authorization: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("proxy credentials are not picklable")


class _Headers(dict[str, str]):
    """Headers whose repr does not show their values (they hold credentials)."""

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{k!r}: ***' for k in self)}}}"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("credentials are not picklable")


def closed_error() -> ConfigurationError:
    """The error for work asked of a closed client; it ends the call (no request starts)."""
    error = ConfigurationError("the client is closed; create a new KeyAPIClient")
    error.fatal = True
    return error


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


def check_api_key(key: str | None) -> Secret:
    """The key, stripped, as a Secret; refused (without showing it) unless printable ASCII
    other than ``"`` and ``\\``: a CR, LF or NUL would break the Authorization header at the
    first request, and a quote or backslash would be escaped in a JSON echo of the key, a
    form the redaction of server text could miss."""
    if not key or not key.strip():
        raise ConfigurationError(
            "no API key: pass api_key= or set the KEYAPI_API_KEY environment variable"
        )
    key = key.strip()
    for position, char in enumerate(key, 1):
        if not "!" <= char <= "~" or char in '"\\':
            what = (
                repr(char) if not char.isprintable() or char in '"\\'
                else "a space or non-ASCII character"
            )
            # Only the offending character is named: it cannot be part of a real key.
            raise ConfigurationError(
                f"invalid API key: character {position} is {what}; a key is printable ASCII "
                "without spaces, quotes or backslashes (a stray newline from a file or a "
                "paste, or quotes copied with it?)"
            )
    return Secret(key)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        # The last "@" ends the userinfo even when an unencoded "/" sits in the password
        # (over-masking a path holding "@" is harmless in a message).
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{sep}{rest}"


def check_base_url(base_url: str) -> str:
    """Validate a base URL: http(s)://host[:port][/path], nothing else; warn on plain http
    off loopback. Credentials, a query or a fragment are refused: the key goes in api_key,
    and the SDK appends the API's paths and parameters itself."""
    if not isinstance(base_url, str) or not base_url.isprintable() or " " in base_url:
        raise ConfigurationError(
            "invalid base_url: it holds spaces or control characters; expected "
            "http(s)://host[:port]"
        )
    shown = _without_userinfo(base_url)
    parts = urlsplit(base_url)
    try:
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError:
        raise ConfigurationError(f"invalid base_url {shown!r}: the port is not valid") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"invalid base_url {shown!r}: expected http(s)://host[:port]")
    if "@" in parts.netloc:
        raise ConfigurationError(
            f"invalid base_url {shown!r}: it holds credentials; the key goes in api_key= "
            "(or KEYAPI_API_KEY), never in the URL"
        )
    if "?" in base_url or "#" in base_url:
        raise ConfigurationError(
            f"invalid base_url {shown!r}: it holds a query or a fragment; expected "
            "http(s)://host[:port], the SDK adds the paths and parameters"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        message = (
            f"base_url {base_url!r} is plain http to a non-loopback host: the API key "
            "would cross the network unencrypted. Use https."
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    return base_url.rstrip("/")


def _parse_proxy(url: str, source: str) -> Proxy:
    if "://" not in url:
        url = "http://" + url  # HTTPS_PROXY=host:3128, as curl reads it
    shown = _without_userinfo(url)
    parts = urlsplit(url)
    try:
        valid = parts.port is None or parts.port > 0
    except ValueError:
        valid = False
    if (
        not valid or parts.scheme not in ("http", "https") or not parts.hostname
        or "?" in url or "#" in url or not url.isprintable()
    ):
        raise ConfigurationError(
            f"invalid proxy {shown!r} (from {source}): expected "
            "http://[user:password@]host:port"
        )
    authorization = password = None
    if parts.username is not None:
        password = unquote(parts.password or "")
        token = base64.b64encode(f"{unquote(parts.username)}:{password}".encode()).decode()
        authorization = f"Basic {token}"
    host = parts.netloc.rpartition("@")[2]
    return Proxy(urlunsplit((parts.scheme, host, parts.path, "", "")), source, authorization,
                 password)


def resolve_proxy(base_url: str, proxy: str | None) -> Proxy | None:
    """The proxy requests to ``base_url`` go through: ``proxy`` if given, else the one the
    environment names (``HTTPS_PROXY`` / ``HTTP_PROXY``, honouring ``NO_PROXY``), else None.

    Resolved once, here, rather than by aiohttp's ``trust_env`` on every request: that would
    cost a thread hop per request, and would read ``~/.netrc``, whose entry for the API's
    host would replace the Bearer header. The environment is not used for a loopback
    ``base_url`` (a local test server cannot be reached through a remote proxy).
    """
    if proxy is not None:
        if not isinstance(proxy, str) or not proxy.strip():
            raise ConfigurationError(
                f"invalid proxy of type {type(proxy).__name__}: expected a URL such as "
                "http://proxy.example:3128"
            )
        return _parse_proxy(proxy.strip(), "proxy=")
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if _is_loopback(host):
        return None
    url = urllib.request.getproxies().get(parts.scheme)
    if not url:
        return None
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if urllib.request.proxy_bypass(netloc):
        return None
    return _parse_proxy(url, f"{parts.scheme.upper()}_PROXY")


class Transport:
    """One aiohttp ClientSession, opened on first use in the running loop.

    The session is closed when the client is, or when its event loop ends
    (``asyncio.run``'s end closes it from inside the loop, so a client used by two
    successive ``asyncio.run`` calls leaves no unclosed session or socket behind).
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        timeout: float,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: Proxy | None = None,
        reachability: Reachability | None = None,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_response_bytes = max_response_bytes
        self.proxy = proxy
        self.reachability = reachability or Reachability()
        secrets = [api_key.reveal()]
        if proxy is not None and proxy.authorization is not None:
            secrets += [proxy.password or "", proxy.authorization.partition(" ")[2]]
        self._redactor = Redactor(secrets)
        # The key goes on each request, never in the session's default headers: aiohttp
        # copies those into the proxy's headers and sends an Authorization found there as
        # Proxy-Authorization, to the proxy, even on the CONNECT of an https tunnel.
        headers = _Headers({"Authorization": f"Bearer {api_key.reveal()}"})
        self._options: dict[str, object] = {"headers": headers}
        if proxy is not None:
            self._options["proxy"] = proxy.url
            if proxy.authorization is not None:
                # Through an https tunnel the proxy reads it off CONNECT; for plain http it
                # reads it off the request itself (what aiohttp's deprecated proxy_auth did).
                if base_url.startswith("https:"):
                    self._options["proxy_headers"] = _Headers(
                        {"Proxy-Authorization": proxy.authorization}
                    )
                else:
                    headers["Proxy-Authorization"] = proxy.authorization
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._guard: AsyncGenerator[None, None] | None = None
        self._closed = False

    @property
    def is_open(self) -> bool:
        """Whether a session exists and has not been closed."""
        return self._session is not None and not self._session.closed

    async def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            # aclose() was called while this request waited: never open a new session.
            raise closed_error()
        # limit=0: the client's own in-flight cap bounds connections, so a permitted
        # request never queues inside aiohttp and then bursts out with others.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={
                "Accept": "application/json",
                # Only what bodies.read_body decompresses within the byte limit.
                "Accept-Encoding": ACCEPT_ENCODING,
                "User-Agent": USER_AGENT,
            },
            raise_for_status=False,
            auto_decompress=False,
            trust_env=False,  # see resolve_proxy
        )
        # aiohttp silently resends an idempotent request once when a kept-alive connection
        # drops. That resend would bypass the rate limiter and the retry count (and may
        # spend a second credit), so every attempt must be ours. aiohttp's own test_utils
        # switch it off the same way; there is no public option.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session, self._session_loop = session, asyncio.get_running_loop()
        # An async generator parked in this loop: asyncio.run (and any runner that calls
        # loop.shutdown_asyncgens) finalizes it before closing the loop, which closes the
        # session from inside its own loop.
        self._guard = self._close_with_loop(session)
        await self._guard.asend(None)
        return session

    @staticmethod
    async def _close_with_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await session.close()

    def forget_session(self) -> None:
        """Drop a session whose event loop was closed without closing it (its sockets go
        with the loop); the next request opens a new one in the running loop."""
        self._session = self._session_loop = self._guard = None

    async def get(self, path: str, params: dict[str, str]) -> HttpResponse:
        """GET ``base_url + path`` without following redirects; see the module docstring."""
        session = self._session if self.is_open else await self._open()
        assert session is not None
        status: int | None = None
        tunnel_refused = False
        try:
            async with session.get(
                self.base_url + path, params=params, allow_redirects=False, **self._options
            ) as resp:
                status = resp.status
                self.reachability.answered()
                if 300 <= status < 400:
                    raise self._redirect(resp)
                if status == 407:  # only a proxy says this, never the API
                    raise self._proxy_refused("the request", path)
                problem: KeyAPIError
                try:
                    body = await read_body(
                        resp.content,
                        resp.headers.get("Content-Encoding"),
                        resp.content_length,
                        self.max_response_bytes,
                    )
                except BodyTooLarge as exc:
                    problem = ResponseTooLargeError(
                        f"answer from {path} over the {self.max_response_bytes}-byte limit "
                        f"({exc.where}); reading stopped there",
                        status=status,
                        limit=self.max_response_bytes,
                    )
                except BodyDamaged as exc:
                    problem = APIConnectionError(
                        f"{self._redactor.text(str(exc))} ({path})", status=status
                    )
                else:
                    return HttpResponse(
                        status,
                        self._redactor.bytes(body),
                        parse_retry_after(resp.headers.get("Retry-After")),
                    )
                resp.close()  # the rest is never read: drop the connection
                raise problem  # outside the except blocks: no __context__
        except asyncio.TimeoutError:
            failure = f"no complete answer within {self._timeout.total:g}s from {path}"
        except (aiohttp.ClientError, OSError) as exc:
            # aiohttp raises this when the proxy answers an https tunnel's CONNECT.
            tunnel_refused = isinstance(exc, aiohttp.ClientHttpProxyError) and exc.status == 407
            # The exception's type and text only: never its request_info (headers).
            failure = f"{type(exc).__name__}: {self._redactor.text(str(exc))} ({path})"
        # Raised here, outside the except blocks: no __context__ to an aiohttp exception.
        if tunnel_refused:
            raise self._proxy_refused("the tunnel (CONNECT)", path)
        if status is None and self.reachability.unanswered(time.monotonic()):
            via = "" if self.proxy is None else f" through the proxy {self.proxy.url}"
            raise APIUnreachableError(
                f"cannot reach the API at {self.base_url}{via}: {self.reachability.streak} "
                f"attempts in a row got no answer (last: {failure})"
            )
        raise APIConnectionError(failure, status=status)

    def _proxy_refused(self, what: str, path: str) -> ProxyAuthenticationError:
        # The proxy's URL as stored holds no credentials; say whether any were sent.
        if self.proxy is None:
            where, sent = "a proxy on the way (none configured)", "none configured"
        else:
            where = f"the proxy {self.proxy.url} (from {self.proxy.source})"
            sent = "sent" if self.proxy.authorization is not None else "none in its URL"
        return ProxyAuthenticationError(
            f"{where} refused {what} with 407 Proxy Authentication Required; credentials: "
            f"{sent} ({path})",
            status=407,
            proxy=None if self.proxy is None else self.proxy.url,
        )

    def _redirect(self, resp: aiohttp.ClientResponse) -> RedirectError:
        location = self._redactor.text(resp.headers.get("Location", ""))
        return RedirectError(
            f"the server answered with a redirect to {location or '(no Location header)'}, "
            "which was not followed",
            status=resp.status,
            location=location or None,
        )

    async def close(self) -> None:
        """Close the session for good: no new session is opened afterwards."""
        self._closed = True
        guard = self._guard
        if guard is not None and self.is_open and self._session_loop is asyncio.get_running_loop():
            await guard.aclose()  # closes the session
        # A session of another, closed loop went with it (the client refuses to be used
        # from a live other loop).
        self.forget_session()
