"""Events from real client calls against FakeKeyAPI: every attempt seen (start and end,
matched), retries, 429s, pacing changes, cache hits, coalesced batches; no key in any
event; KEYAPI_LOG honoured by the client. (OpenTelemetry: test_client_otel.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import msgspec
import pytest

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI, Faults

from .fake_client import CANARY, DETAIL, client


def of(events: list[ka.Event], kind: type[ka.Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_hooks_see_every_attempt_retry_429_and_batch_and_never_the_key() -> None:
    faults = Faults(http_5xx={2, 6}, body_429={3, 8}, reset={5}, truncated={9})
    async with FakeKeyAPI(api_keys=[CANARY], latency=0.005, faults=faults) as fake:
        ids = fake.make_ids(120)
        events: list[ka.Event] = []
        counted: list[ka.Event] = []
        async with client(fake, on_event=[events.append, counted.append]) as api:
            results = await asyncio.gather(
                *(api.video_details(ids[n : n + 3]) for n in range(0, 120, 3)),
                return_exceptions=True,
            )
            stats = api.stats
        server = fake.stats()
    assert events == counted  # every handler, every event
    started, finished = of(events, ka.AttemptStarted), of(events, ka.AttemptFinished)
    # One start and one end per attempt the server saw (resets included: no answer).
    assert len(started) == len(finished) == stats.requests == server.requests
    assert sorted(e.attempt_id for e in started) == sorted(e.attempt_id for e in finished)
    assert len({e.attempt_id for e in started}) == len(started)
    assert Counter(e.endpoint for e in finished) == {DETAIL: server.requests}
    # Charged where the server charged, but for the truncated answer (charged, yet a
    # damaged body: unknown to the client); 429s free; 5xx and the reset unknown.
    assert sum(e.charged is True for e in finished) == server.credits_spent - 1
    assert all(e.charged is not True for e in finished if e.error is not None)
    assert {e.error for e in finished} == {None, "ServerError", "RateLimitError",
                                          "APIConnectionError", "DecodeError"}
    # The truncated answer was charged by the server, unknown to the client.
    assert sum(e.charged is None for e in finished) == 4 == stats.credits_unknown
    assert len(of(events, ka.RateLimited)) == stats.rate_limited > 0
    retries = of(events, ka.Retrying)
    assert len(retries) == stats.retries > 0 and all(e.wait >= 0 for e in retries)
    assert any(e.attempt > 1 for e in finished)
    batches = of(events, ka.BatchCoalesced)
    assert sum(e.ids for e in batches) == 120 and all(e.ids <= 10 for e in batches)
    assert of(events, ka.PacingChanged)[0].reason == "start"
    assert all(isinstance(r, list) for r in results)  # every failure was retried away
    encoded = b"\n".join(msgspec.json.encode(e) for e in events)
    assert CANARY.encode() not in encoded and b"Bearer" not in encoded


async def test_a_429_slows_the_pacing_and_says_so() -> None:
    async with FakeKeyAPI(api_keys=[CANARY], faults=Faults(body_429={2})) as fake:
        events: list[ka.Event] = []
        async with client(fake, qps=100, on_event=events.append) as api:
            for vid in fake.make_ids(4):
                await api.video_detail(vid)
    throttled = [e for e in of(events, ka.PacingChanged) if e.reason == "throttled"]
    assert len(throttled) == 1 and throttled[0].qps < throttled[0].previous == 100


async def test_no_handler_builds_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    monkeypatch.setattr(ka.AttemptStarted, "__init__", lambda *a, **k: built.append(a))
    async with FakeKeyAPI(api_keys=[CANARY]) as fake, client(fake) as api:
        await api.video_details(fake.make_ids(3))
    assert built == []


async def test_a_failing_handler_never_fails_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: ka.Event) -> None:
        raise RuntimeError("observer bug")

    async with FakeKeyAPI(api_keys=[CANARY]) as fake, client(fake, on_event=broken) as api:
        [vid] = fake.make_ids(1, known=True)
        video = await api.video_detail(vid)
    assert video is not None
    assert any("observer bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_a_bad_handler_is_refused_at_construction() -> None:
    with pytest.raises(ka.ConfigurationError):
        ka.KeyAPIClient(CANARY, on_event=[print, 42])  # type: ignore[list-item]


# -- KEYAPI_LOG -------------------------------------------------------------------------


def test_creating_a_client_applies_keyapi_log(
    sdk_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYAPI_LOG", "debug")
    ka.KeyAPIClient(CANARY)
    assert sdk_logger.level == logging.DEBUG
