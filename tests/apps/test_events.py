"""Events and make_emitter: nothing built when nobody listens, every handler called in
order, a failing handler never fails the request, URLs without credentials."""

from __future__ import annotations

import logging
from typing import Union

import msgspec
import pytest

import keyapi_async as ka
from keyapi_async.app.events import make_emitter, url_without_credentials

EVENT = ka.CacheHit(kind="detail", hits=2)


def test_nobody_listening_means_no_emitter_at_all() -> None:
    # The client keeps this in one attribute and builds events only when it is not None.
    assert make_emitter(None) is None
    assert make_emitter([]) is None


def test_every_handler_sees_every_event_in_registration_order() -> None:
    seen: list[tuple[str, ka.Event]] = []
    emit = make_emitter([lambda e: seen.append(("a", e)), lambda e: seen.append(("b", e))])
    assert emit is not None
    emit(EVENT)
    assert seen == [("a", EVENT), ("b", EVENT)]
    one: list[ka.Event] = []
    single = make_emitter(one.append)
    assert single is not None
    single(EVENT)
    assert one == [EVENT]


def test_a_failing_handler_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[ka.Event] = []

    def broken(event: ka.Event) -> None:
        raise RuntimeError("handler bug")

    emit = make_emitter([broken, seen.append])
    assert emit is not None
    with caplog.at_level(logging.ERROR, logger="keyapi_async"):
        emit(EVENT)  # does not raise
    assert seen == [EVENT]
    assert "CacheHit" in caplog.text and "handler bug" in caplog.text


@pytest.mark.parametrize("bad", [42, [print, "not callable"]])
def test_a_bad_handler_is_refused_up_front(bad: object) -> None:
    with pytest.raises(TypeError):
        make_emitter(bad)  # type: ignore[arg-type]


def test_events_are_frozen_and_encode_with_their_type() -> None:
    event = ka.AttemptStarted(endpoint="/p", url="https://h/p", attempt=1, attempt_id=9)
    with pytest.raises(AttributeError):
        event.attempt = 2  # type: ignore[misc]
    encoded = msgspec.json.decode(msgspec.json.encode(event))
    assert encoded["type"] == "AttemptStarted" and encoded["attempt_id"] == 9
    any_event = Union[tuple(ka.Event.__subclasses__())]  # type: ignore[valid-type]  # noqa: UP007
    assert msgspec.json.decode(msgspec.json.encode(event), type=any_event) == event


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://api.keyapi.ai", "https://api.keyapi.ai/p?a=1&b=x+y"),
        ("https://u:secret@proxy.example:8443/keyapi/", "https://proxy.example:8443/keyapi/p?a=1&b=x+y"),
        ("http://127.0.0.1:8080?token=secret#frag", "http://127.0.0.1:8080/p?a=1&b=x+y"),
    ],
)
def test_urls_never_carry_credentials(base: str, expected: str) -> None:
    url = url_without_credentials(base, "/p", {"a": "1", "b": "x y"})
    assert url == expected and "secret" not in url
    assert url_without_credentials(base, "/p", None) == expected.split("?")[0]
