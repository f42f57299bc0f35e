"""OpenTelemetryHook: spans and metrics per the HTTP client conventions, read back from the
SDK's in-memory exporter and reader; nothing secret in them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the dev extra)")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import keyapi_async as ka
from keyapi_async.app.events import url_without_credentials

DETAIL = "/v1/tiktok/video/detail/analytics"
SECRET = "sk-live-LEAKCANARY-7f3a9c2e51d04b6b"
BASE = f"https://user:{SECRET}@api.keyapi.ai"


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.hook = ka.OpenTelemetryHook(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        """metric name -> its data points."""
        data = self.reader.get_metrics_data()
        assert data is not None
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


def finished(**overrides: Any) -> ka.AttemptFinished:
    fields: dict[str, Any] = {
        "endpoint": DETAIL,
        "url": url_without_credentials(BASE, DETAIL, {"video_ids": "7117191641181555995"}),
        "attempt": 1, "attempt_id": 1, "status": 200, "code": 0, "error": None,
        "latency": 0.25, "started_at": 1_700_000_000.5, "charged": True,
        "request_id": "req-1",
    }
    fields.update(overrides)
    return ka.AttemptFinished(**fields)


def test_a_successful_attempt_is_one_client_span_per_the_conventions(otel: Telemetry) -> None:
    otel.hook(finished())
    [span] = otel.finished()
    assert span.name == f"GET {DETAIL}"
    assert span.kind is SpanKind.CLIENT
    assert span.start_time == 1_700_000_000_500_000_000
    assert span.end_time == span.start_time + 250_000_000
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "server.address": "api.keyapi.ai",
        "server.port": 443,
        "url.full": f"https://api.keyapi.ai{DETAIL}?video_ids=7117191641181555995",
        "url.template": DETAIL,
        "http.response.status_code": 200,
        "keyapi.response.code": 0,
        "keyapi.request_id": "req-1",
        "keyapi.charged": True,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_retries_carry_resend_count_and_body_code_errors_are_errors(otel: Telemetry) -> None:
    otel.hook(finished(attempt=1, status=200, code=429, error="RateLimitError", charged=False))
    otel.hook(finished(attempt=2, attempt_id=2, status=None, code=None,
                       error="APIConnectionError", charged=None, request_id=None))
    otel.hook(finished(attempt=3, attempt_id=3))
    first, second, third = otel.finished()
    assert "http.request.resend_count" not in (first.attributes or {})
    assert (second.attributes or {})["http.request.resend_count"] == 1
    assert (third.attributes or {})["http.request.resend_count"] == 2
    # HTTP 200 carrying code 429 is a failure: error.type and status ERROR.
    assert (first.attributes or {})["error.type"] == "RateLimitError"
    assert (first.attributes or {})["http.response.status_code"] == 200
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description is None  # no message: it could quote the server
    assert "http.response.status_code" not in (second.attributes or {})
    assert second.status.status_code is StatusCode.ERROR
    assert third.status.status_code is StatusCode.UNSET


def test_the_span_is_a_child_of_the_callers_current_span(otel: Telemetry) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("GET /videos/{id}") as handler:
        otel.hook(finished())
    attempt = next(s for s in otel.finished() if s.name.startswith("GET /v1"))
    assert attempt.parent is not None
    assert attempt.parent.span_id == handler.get_span_context().span_id


def test_metrics_duration_credits_429s_cache_hits_and_pacing(otel: Telemetry) -> None:
    otel.hook(finished(latency=0.2))
    otel.hook(finished(latency=0.4, status=429, code=429, error="RateLimitError", charged=False))
    otel.hook(finished(latency=0.1, status=None, code=None, error="APIConnectionError",
                       charged=None))
    otel.hook(ka.RateLimited(endpoint=DETAIL, attempt=1, retry_after=2.0))
    otel.hook(ka.CacheHit(kind="detail", hits=7))
    otel.hook(ka.CacheHit(kind="detail", hits=3))
    otel.hook(ka.PacingChanged(qps=8.0, previous=10.0, reason="429"))
    otel.hook(ka.PacingChanged(qps=6.5, previous=8.0, reason="429"))
    otel.hook(ka.BatchCoalesced(ids=10, asks=14, full=True))  # no metric: ignored quietly
    metrics = otel.metrics()

    durations = metrics["http.client.request.duration"]
    assert sum(p.count for p in durations) == 3
    assert sum(p.sum for p in durations) == pytest.approx(0.7)
    by_status = {p.attributes.get("http.response.status_code"): p for p in durations}
    assert by_status[429].attributes["error.type"] == "RateLimitError"
    assert by_status[200].attributes == {
        "http.request.method": "GET", "server.address": "api.keyapi.ai",
        "server.port": 443, "url.template": DETAIL, "http.response.status_code": 200,
    }
    assert list(by_status[200].explicit_bounds)[:3] == [0.005, 0.01, 0.025]

    credits = {p.attributes["keyapi.credit.charge"]: p.value
               for p in metrics["keyapi.client.credits"]}
    assert credits == {"charged": 1, "unknown": 1}  # the free 429 is not counted
    assert [p.value for p in metrics["keyapi.client.rate_limited"]] == [1]
    assert [p.value for p in metrics["keyapi.client.cache.hits"]] == [10]
    assert [p.value for p in metrics["keyapi.client.pacing.rate"]] == [6.5]


def test_extra_attributes_label_metrics_not_spans(otel: Telemetry) -> None:
    hook = ka.OpenTelemetryHook(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider,
        attributes={"keyapi.client": "web"},
    )
    hook(finished())
    [span] = otel.finished()
    assert "keyapi.client" not in (span.attributes or {})
    [point] = otel.metrics()["http.client.request.duration"]
    assert point.attributes["keyapi.client"] == "web"


def test_no_credential_reaches_a_span_or_a_metric(otel: Telemetry) -> None:
    url = url_without_credentials(f"{BASE}/?token={SECRET}#{SECRET}", DETAIL, {"page": "1"})
    assert SECRET not in url and url == f"https://api.keyapi.ai{DETAIL}?page=1"
    events: list[ka.Event] = [
        ka.AttemptStarted(endpoint=DETAIL, url=url, attempt=1, attempt_id=1),
        finished(url=url), finished(url=url, error="AuthenticationError", status=401),
        ka.RateLimited(endpoint=DETAIL, attempt=1), ka.CacheHit(kind="detail", hits=1),
        ka.PacingChanged(qps=5.0, previous=None, reason="start"),
    ]
    for event in events:
        otel.hook(event)
        assert SECRET not in msgspec.json.encode(event).decode()
    exported = [span.to_json() for span in otel.finished()]
    data = otel.reader.get_metrics_data()
    assert data is not None
    assert exported and SECRET not in "".join(exported) + data.to_json()
    assert SECRET not in json.dumps([repr(e) for e in events])


def test_no_event_type_has_a_field_for_headers_or_keys() -> None:
    for cls in ka.Event.__subclasses__():
        names = {f.name for f in msgspec.structs.fields(cls)}
        assert not names & {"headers", "api_key", "key", "authorization", "params", "secret"}


def test_importing_the_sdk_does_not_import_opentelemetry() -> None:
    code = "import sys, keyapi_async; assert 'opentelemetry' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_the_extra_the_hook_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ka.ConfigurationError, match=r"keyapi-async\[otel\]"):
        ka.OpenTelemetryHook()
