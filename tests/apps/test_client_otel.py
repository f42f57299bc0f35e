"""OpenTelemetry spans and metrics from real client calls against FakeKeyAPI, read from
the SDK's in-memory exporter and reader: one span per attempt, the conventions' attributes,
the metrics, and no key anywhere."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the dev extra)")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

from .fake_client import CANARY, DETAIL, client


async def test_spans_and_metrics_from_real_calls_without_the_key() -> None:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    hook = ka.OpenTelemetryHook(
        tracer_provider=tracing, meter_provider=MeterProvider(metric_readers=[reader])
    )
    faults = Faults(http_5xx={2}, body_429={4})
    async with FakeKeyAPI(api_keys=[CANARY], faults=faults) as fake:
        ids = fake.make_ids(30)
        async with client(fake, on_event=hook, cache=ka.MemoryCache()) as api:
            for n in range(0, 30, 10):
                await api.video_details(ids[n : n + 10])
            await api.video_details(ids[:3])  # from the cache
        requests = fake.stats().requests
    finished = list(spans.get_finished_spans())
    assert len(finished) == requests == 5
    for span in finished:
        assert span.kind is SpanKind.CLIENT and span.name == f"GET {DETAIL}"
        attrs = dict(span.attributes or {})
        assert attrs["http.request.method"] == "GET"
        assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == fake.port
        assert str(attrs["url.full"]).startswith(f"{fake.url}{DETAIL}?video_ids=")
        assert CANARY not in repr(attrs)
    errors = {dict(s.attributes or {}).get("error.type"): s for s in finished}
    assert errors["ServerError"].attributes["http.response.status_code"] == 500  # type: ignore[index]
    assert errors["RateLimitError"].attributes["http.response.status_code"] == 200  # type: ignore[index]
    assert errors["RateLimitError"].status.status_code is StatusCode.ERROR
    resent = [s for s in finished if "http.request.resend_count" in (s.attributes or {})]
    assert len(resent) == 2  # the request after the 500, and the one after the 429
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    assert sum(p.count for p in points["http.client.request.duration"]) == 5
    credits = {
        p.attributes["keyapi.credit.charge"]: p.value for p in points["keyapi.client.credits"]
    }
    assert credits == {"charged": 3, "unknown": 1}  # the 500 may have cost one
    assert sum(p.value for p in points["keyapi.client.rate_limited"]) == 1
    assert sum(p.value for p in points["keyapi.client.cache.hits"]) == 3
    assert points["keyapi.client.pacing.rate"][0].value > 0
    assert CANARY not in repr(points)
