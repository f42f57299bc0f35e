"""A server that echoes the key back: the SDK removes it from everything it surfaces or stores
(exception text and chain, failed-id reasons, state files, output, CLI output, logs), and
server text reaches ``str(exc)`` on one line and bounded in length."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

import pytest
from aiohttp import web
from conftest import API_KEY
from reliability.hostile import Hostile, LoopThread, chain

import keyapi_async as ka
from keyapi_async.cli import main
from keyapi_async.pipeline.redaction import Redactor, clean_text
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability

FAST = ka.RetryPolicy(base_delay=0.001, max_delay=0.005)


def echoed_key(request: web.Request) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


def echo(status: int, code: int, escape: bool = False) -> Hostile:
    """A server answering every request with an error message that quotes the key
    (JSON-escaped character by character when ``escape``), a forged log line and a
    request id that holds the key too."""

    async def handler(request: web.Request) -> web.Response:
        key = echoed_key(request)
        shown = "".join(f"\\u{ord(c):04x}" for c in key) if escape else key
        body = (
            f'{{"code":{code},"message":"apiKey {shown} is invalid\\n'
            f'CRITICAL forged log line","requestId":"req-{shown}"}}'
        )
        return web.Response(status=status, body=body.encode(), content_type="application/json")

    return Hostile(handler)


def everything_written(root: Path) -> str:
    return "\n".join(p.read_text("utf-8", "replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("status", "code", "escape", "error"),
    [
        (401, 401, False, ka.AuthenticationError),  # fatal: the crawl aborts
        (500, 500, True, None),  # retried, then the ids fail with a reason
        (200, 400, False, None),  # body code wins; not retried, ids fail
    ],
)
async def test_an_echoed_key_reaches_no_error_reason_state_file_or_log(
    status: int, code: int, escape: bool, error: type[ka.KeyAPIError] | None,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out.jsonl"
    ids = [str(7_000_000_000_000_000_000 + i) for i in range(30)]
    async with echo(status, code, escape) as server, ka.KeyAPIClient(
        API_KEY, base_url=server.url, qps=500, max_retries=1, retry_policy=FAST
    ) as client:
        if error is None:
            report = await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
            exposed: list[str] = []
        else:
            with pytest.raises(error) as info:
                await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
            report = info.value.report  # type: ignore[attr-defined]
            exposed = [
                *(repr(e) + str(e) for e in chain(info.value)),
                "".join(traceback.format_exception(info.value)),
            ]
            assert "\n" not in str(info.value)  # no forged line
            assert "apiKey *** is invalid" in str(info.value)
    assert server.requests  # the server really was asked, and echoed
    reasons = list(report.failed.values())
    assert reasons and all("***" in r and "\n" not in r for r in reasons)
    exposed += [repr(report), json.dumps(report.to_dict()), *reasons, caplog.text,
                everything_written(tmp_path)]
    for text in exposed:
        assert API_KEY not in text
    # A forged record would start a line of its own in the log.
    assert not any(line.startswith("CRITICAL forged") for line in caplog.text.splitlines())


async def test_an_echoed_key_inside_records_is_not_stored(tmp_path: Path) -> None:
    fake = FakeKeyAPI()
    ids = fake.make_ids(20, known=True)

    async def handler(request: web.Request) -> web.Response:
        asked = request.query["video_ids"].split(",")
        data = []
        for vid in asked:
            record = fake.detail_record(vid)
            record["video_desc"] = f"my key is {echoed_key(request)}"
            data.append(record)
        return web.json_response({"code": 0, "data": data, "requestId": "r"})

    out = tmp_path / "out.jsonl"
    async with Hostile(handler) as server, ka.KeyAPIClient(
        API_KEY, base_url=server.url, qps=500
    ) as client:
        report = await ka.crawl_video_details(client, ids, ka.JsonlSink(out))
    assert report.fetched == 20
    text = out.read_text()
    assert API_KEY not in text and text.count("my key is ***") == 20


def test_the_cli_never_prints_an_echoed_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{7_000_000_000_000_000_000 + i}\n" for i in range(25)))
    monkeypatch.setenv("KEYAPI_API_KEY", API_KEY)
    with LoopThread() as thread:
        for status, code in [(500, 500), (401, 401)]:
            server = echo(status, code)
            thread.run(server.__aenter__())
            try:
                exit_code = main([
                    "videos", str(ids), "-o", str(tmp_path / f"out{status}.jsonl"),
                    "--base-url", server.url, "--max-retries", "1", "--qps", "200", "-v",
                ])
            finally:
                thread.run(server.__aexit__())
            captured = capsys.readouterr()
            shown = captured.out + captured.err
            assert exit_code != 0 and server.requests
            assert "***" in shown or "request id" in shown
            assert API_KEY not in shown
            assert API_KEY not in everything_written(tmp_path)


def test_server_text_is_one_bounded_line() -> None:
    hostile = "bad\r\nINFO forged\x1b[31m\u202e\x00" + "x" * 100_000
    err = ka.ServerError(hostile, status=500, request_id="id\nforged")
    text = str(err)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\u202e" not in text
    assert len(text) < 1000 and "more characters" in text
    assert err.request_id == "id forged"
    assert clean_text("plain message") == "plain message"  # the usual case is untouched


@pytest.mark.parametrize(
    "body",
    [
        b'{"message":"KEY"}',
        b'{"message":"K\\u0045Y"}',  # a JSON escape hides one character
        b'{"message":"\\u004b\\u0045\\u0059"}',
    ],
)
def test_every_json_form_of_the_key_is_removed(body: bytes) -> None:
    secret = "KEY"
    out = Redactor([secret]).bytes(body)
    assert json.loads(out)["message"] == "***"


def test_an_escaped_backslash_is_not_unescaped() -> None:
    # "\\u0041" is a backslash followed by the text u0041, not an "A": left byte-identical.
    body = b'{"m":"\\\\u0041 and \\u00e9"}'
    assert Redactor(["A-secret"]).bytes(body) == body
