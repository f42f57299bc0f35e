"""What the client tells observers: typed events, and one function that delivers them.

Events are frozen msgspec Structs (plain records, cheap to build, JSON-encodable with a
``type`` tag). None has a field that could hold the API key: no headers, no params dict,
and every URL is built by :func:`url_without_credentials`, which drops a ``user:password@``
part. The key travels only in the Authorization header, which no event sees.

Guarantee of :func:`make_emitter`: it returns ``None`` when nobody listens, so the client
tests one attribute (``if self._emit is not None:``) and builds no event at all otherwise;
when someone listens it returns one function that calls every handler in registration
order, synchronously, in the task that made the request (so ``contextvars``, e.g. the
current OpenTelemetry span, are the caller's). A handler that raises is logged and skipped:
observing a request never fails it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec

__all__ = [
    "AttemptFinished",
    "AttemptStarted",
    "BatchCoalesced",
    "CacheHit",
    "Event",
    "EventHandler",
    "PacingChanged",
    "RateLimited",
    "Retrying",
    "make_emitter",
    "url_without_credentials",
]

logger = logging.getLogger("keyapi_async")


class Event(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base class of every event: ``msgspec.json.encode(event)`` adds ``"type": ClassName``."""


class AttemptStarted(Event, frozen=True, kw_only=True, tag=True):
    """An attempt is about to go on the wire (it holds its permit and, with a budget, its credit).

    ``attempt`` counts from 1 (retries are 2, 3, ...); ``attempt_id`` is unique per client
    and repeated in the matching :class:`AttemptFinished`.
    """

    endpoint: str
    url: str
    attempt: int
    attempt_id: int
    method: str = "GET"


class AttemptFinished(Event, frozen=True, kw_only=True, tag=True):
    """An attempt ended: answered (any status), failed on the network, or cancelled.

    ``status`` is the HTTP status (None when no answer came); ``code`` the envelope code
    when the body had one; ``error`` the error's class name (None on success,
    ``"CancelledError"`` when the caller gave up mid-flight); ``latency`` seconds from
    send to the last byte; ``started_at`` the wall-clock start (Unix seconds); ``charged``
    True when the answer cost a credit, False when it cannot have (a non-zero code, an
    HTTP error), None when unknown (a damaged answer, a lost connection).
    """

    endpoint: str
    url: str
    attempt: int
    attempt_id: int
    status: int | None
    code: int | None
    error: str | None
    latency: float
    started_at: float
    charged: bool | None
    request_id: str | None = None
    method: str = "GET"


class Retrying(Event, frozen=True, kw_only=True, tag=True):
    """Attempt ``attempt`` failed with ``error`` (a class name); the next starts in ``wait`` s."""

    endpoint: str
    attempt: int
    wait: float
    error: str


class RateLimited(Event, frozen=True, kw_only=True, tag=True):
    """The server answered 429 (HTTP status or envelope code) to attempt ``attempt``."""

    endpoint: str
    attempt: int
    retry_after: float | None = None


class PacingChanged(Event, frozen=True, kw_only=True, tag=True):
    """The limiter's pacing rate changed to ``qps`` (request starts per second)."""

    qps: float
    previous: float | None
    reason: str


class CacheHit(Event, frozen=True, kw_only=True, tag=True):
    """``hits`` keys of one lookup were served fresh from the cache (no permit, no credit).

    ``kind`` names what: ``"detail"`` (video ids, negative entries included),
    ``"ranking"`` (pages) or ``"raw"`` (untyped answers).
    """

    kind: str
    hits: int


class BatchCoalesced(Event, frozen=True, kw_only=True, tag=True):
    """The coalescer sent ``ids`` ids in one request on behalf of ``asks`` id requests.

    ``asks - ids`` requests for an id were served by a request another caller had already
    opened; ``full`` is True when the batch was cut at its size, False when its window ran
    out first.
    """

    ids: int
    asks: int
    full: bool


#: A callable that observes events. Called synchronously: keep it quick, hand slow work
#: (network, disk) to a queue of your own.
EventHandler = Callable[[Event], object]


def make_emitter(
    handlers: EventHandler | Iterable[EventHandler] | None,
) -> Callable[[Event], None] | None:
    """One function delivering an event to every handler, or None when there are none.

    ``handlers`` is a callable, an iterable of callables, or None. Raises TypeError for
    anything else, so a misconfiguration shows at construction, not at the first request.
    """
    if handlers is None:
        return None
    if callable(handlers):
        chosen: tuple[EventHandler, ...] = (handlers,)
    else:
        try:
            chosen = tuple(handlers)
        except TypeError:
            raise TypeError(
                f"on_event must be a callable or an iterable of callables, got {handlers!r}"
            ) from None
        for handler in chosen:
            if not callable(handler):
                raise TypeError(f"event handler {handler!r} is not callable")
    if not chosen:
        return None

    def emit(event: Event) -> None:
        for handler in chosen:
            try:
                handler(event)
            except Exception:
                logger.exception("event handler %r failed on %s", handler, type(event).__name__)

    return emit


def url_without_credentials(base_url: str, path: str, params: dict[str, str] | None) -> str:
    """``base_url + path + ?params``, without ``user:password@``, query or fragment of the base.

    The key is never a query parameter of the SDK's requests; dropping the userinfo and the
    base URL's own query is what keeps a credentialed base URL (``https://user:secret@proxy``,
    ``https://proxy/?token=...``) out of events and spans.
    """
    parts = urlsplit(base_url)
    netloc = parts.netloc.rpartition("@")[2]
    query = urlencode(params) if params else ""
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + path, query, ""))
