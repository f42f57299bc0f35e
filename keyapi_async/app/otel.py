"""OpenTelemetry for the client: spans and metrics made from its events.

:class:`OpenTelemetryHook` is an event handler (``KeyAPIClient(on_event=hook)``) that
records, following the OpenTelemetry HTTP client semantic conventions:

* one ``CLIENT`` span per attempt, named ``GET /v1/tiktok/...`` (method and url template),
  with ``http.request.method``, ``server.address``, ``server.port``, ``url.full`` (never
  with credentials: see :func:`~keyapi_async.app.events.url_without_credentials`),
  ``url.template``, ``http.response.status_code``, ``http.request.resend_count`` on
  retries, and ``error.type`` with status ERROR for every failure, including errors that
  arrive as a non-zero body code under HTTP 200; plus ``keyapi.response.code``,
  ``keyapi.request_id`` and ``keyapi.charged``;
* metrics: ``http.client.request.duration`` (histogram, seconds), ``keyapi.client.credits``
  (counter; ``keyapi.credit.charge`` is ``charged`` or ``unknown``),
  ``keyapi.client.rate_limited`` (429 answers), ``keyapi.client.cache.hits`` and
  ``keyapi.client.pacing.rate`` (gauge, request starts per second).

A span is recorded when its attempt ends, with the attempt's real start and end times,
as a child of the span current in the task that made the request (a coalesced request
runs under the call that opened its batch). Only the API is used (extra ``otel``:
``opentelemetry-api``); the application chooses and configures the SDK and exporters.
Importing this module does not import OpenTelemetry; creating the hook does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from .._version import __version__
from ..pipeline.errors import ConfigurationError
from .events import AttemptFinished, CacheHit, Event, PacingChanged, RateLimited

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["DURATION_BUCKETS", "OpenTelemetryHook"]

#: The semantic conventions' advised buckets for ``http.client.request.duration``.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)

_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


@functools.lru_cache(maxsize=64)
def _server(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)


class OpenTelemetryHook:
    """An event handler that records the client's attempts as OpenTelemetry spans and metrics.

    Args:
        tracer_provider: Where spans go; the global provider by default.
        meter_provider: Where metrics go; the global provider by default.
        attributes: Added to every metric point, e.g. ``{"keyapi.client": "web"}`` to
            tell apart several clients sharing one process.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError:
            raise ConfigurationError(
                "OpenTelemetryHook needs opentelemetry-api: pip install 'keyapi-async[otel]'"
            ) from None
        self._trace = trace
        self._tracer = trace.get_tracer(
            "keyapi_async", __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter("keyapi_async", __version__, meter_provider=meter_provider)
        self._attributes: dict[str, Any] = dict(attributes or {})
        self._duration = meter.create_histogram(
            "http.client.request.duration", unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._credits = meter.create_counter(
            "keyapi.client.credits", unit="{credit}",
            description="Credits spent by answers (charge 'unknown': lost or damaged answers).",
        )
        self._rate_limited = meter.create_counter(
            "keyapi.client.rate_limited", unit="{response}",
            description="Answers that were 429 (HTTP status or body code).",
        )
        self._cache_hits = meter.create_counter(
            "keyapi.client.cache.hits", unit="{hit}",
            description="Keys served from the cache: no permit, no credit.",
        )
        self._pacing = meter.create_gauge(
            "keyapi.client.pacing.rate", unit="{request}/s",
            description="The rate limiter's current pacing of request starts.",
        )
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            AttemptFinished: self._attempt,
            RateLimited: self._throttled,
            CacheHit: self._cache_hit,
            PacingChanged: self._pacing_changed,
        }

    def __call__(self, event: Event) -> None:
        """Record ``event`` (events this hook does not use are ignored)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _attempt(self, event: AttemptFinished) -> None:
        trace = self._trace
        address, port = _server(event.url.partition("?")[0])
        common: dict[str, Any] = {
            "http.request.method": event.method,
            "server.address": address,
            "server.port": port,
            "url.template": event.endpoint,
        }
        if event.status is not None:
            common["http.response.status_code"] = event.status
        if event.error is not None:
            common["error.type"] = event.error
        span_attributes: dict[str, Any] = {**common, "url.full": event.url}
        if event.attempt > 1:
            span_attributes["http.request.resend_count"] = event.attempt - 1
        if event.code is not None:
            span_attributes["keyapi.response.code"] = event.code
        if event.request_id is not None:
            span_attributes["keyapi.request_id"] = event.request_id
        if event.charged is not None:
            span_attributes["keyapi.charged"] = event.charged
        start = int(event.started_at * 1e9)
        span = self._tracer.start_span(
            f"{event.method} {event.endpoint}",
            kind=trace.SpanKind.CLIENT,
            attributes=span_attributes,
            start_time=start,
        )
        if event.error is not None:
            # No description: messages may quote the server; the type says what failed.
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        span.end(end_time=start + int(event.latency * 1e9))
        self._duration.record(event.latency, {**self._attributes, **common})
        if event.charged is not False:
            charge = "charged" if event.charged else "unknown"
            self._credits.add(1, {**self._attributes, "url.template": event.endpoint,
                                  "keyapi.credit.charge": charge})

    def _throttled(self, event: RateLimited) -> None:
        self._rate_limited.add(1, {**self._attributes, "url.template": event.endpoint})

    def _cache_hit(self, event: CacheHit) -> None:
        self._cache_hits.add(event.hits, {**self._attributes, "keyapi.cache.kind": event.kind})

    def _pacing_changed(self, event: PacingChanged) -> None:
        self._pacing.set(event.qps, self._attributes)

    def __repr__(self) -> str:
        return f"OpenTelemetryHook(attributes={self._attributes!r})"
