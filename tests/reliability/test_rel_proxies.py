"""Proxies: ``proxy=``, ``--proxy`` and HTTPS_PROXY / HTTP_PROXY / NO_PROXY, tested through a
small forward proxy on 127.0.0.1; proxy credentials never show in a repr or an error."""

from __future__ import annotations

import asyncio
import base64
import traceback
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import API_KEY
from reliability.hostile import Hostile, LoopThread, chain, closed_port

import keyapi_async as ka
from keyapi_async.cli import main
from keyapi_async.pipeline.transport import resolve_proxy
from keyapi_async.testing import FakeKeyAPI

pytestmark = [
    pytest.mark.reliability,
    # http://api.test is plain http off loopback: the SDK warns, rightly; not the point here.
    pytest.mark.filterwarnings("ignore:.*is plain http to a non-loopback host:UserWarning"),
]

API_HOST = "api.test"  # resolved by the proxy alone: only a request through it can succeed
PASSWORD = "pr0xy-PASSWORD-canary"


class ForwardProxy:
    """An HTTP forward proxy: takes absolute-URI requests (``GET http://api.test/... HTTP/1.1``),
    checks Proxy-Authorization when ``credentials`` are set, and forwards to ``routes``."""

    def __init__(self, routes: dict[str, str], credentials: tuple[str, str] | None = None) -> None:
        self.routes = routes
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.expected = None if credentials is None else "Basic " + base64.b64encode(
            ":".join(credentials).encode()
        ).decode()
        self.server = Hostile(self.forward)

    async def forward(self, request: web.Request) -> web.Response:
        self.seen.append((str(request.url), dict(request.headers)))
        given = request.headers.get("Proxy-Authorization")
        if self.expected is not None and given != self.expected:
            return web.Response(status=407, text="proxy authentication required")
        upstream = self.routes[request.host]
        hop = {"host", "proxy-authorization", "proxy-connection", "connection"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
        async with aiohttp.ClientSession(auto_decompress=False) as session, session.get(
            upstream + request.path_qs, headers=headers
        ) as answer:
            body = await answer.read()
            return web.Response(status=answer.status, body=body, headers={
                k: v for k, v in answer.headers.items()
                if k.lower() in {"content-type", "content-encoding"}
            })


async def test_requests_go_through_proxy_with_the_key_and_hidden_credentials() -> None:
    async with FakeKeyAPI(api_keys=[API_KEY]) as api:  # refuses any other key: 401
        ids = api.make_ids(30)
        proxy = ForwardProxy({API_HOST: api.url}, credentials=("user", PASSWORD))
        async with proxy.server:
            url = f"http://user:{PASSWORD}@127.0.0.1:{proxy.server.port}"
            async with ka.KeyAPIClient(API_KEY, base_url=f"http://{API_HOST}", proxy=url,
                                       qps=500) as client:
                videos = await client.video_details(ids)
                shown = [repr(client), str(client), repr(vars(client)),
                         repr(vars(client._transport))]
                assert client.proxy == f"http://127.0.0.1:{proxy.server.port}"
    assert len(videos) == sum(api.is_known(i) for i in ids) > 0
    assert len(proxy.seen) == len(api.requests) == 3  # every request went through the proxy
    for target, headers in proxy.seen:
        assert target.startswith(f"http://{API_HOST}/v1/tiktok/video/detail/analytics?")
        assert headers["Authorization"] == f"Bearer {API_KEY}"  # reached the API
    assert all(r.key == API_KEY for r in api.requests)
    for text in shown:
        assert PASSWORD not in text and API_KEY not in text


async def test_the_environment_proxy_is_used_unless_no_proxy_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with FakeKeyAPI(api_keys=[API_KEY]) as api:
        proxy = ForwardProxy({API_HOST: api.url})
        async with proxy.server:
            monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{proxy.server.port}")  # no scheme
            async with ka.KeyAPIClient(API_KEY, base_url=f"http://{API_HOST}") as client:
                assert client.proxy == f"http://127.0.0.1:{proxy.server.port}"
                await client.video_details(api.make_ids(3))
    assert len(proxy.seen) == 1
    assert resolve_proxy(f"http://{API_HOST}", None) is not None
    monkeypatch.setenv("NO_PROXY", f"other.example,{API_HOST}")
    assert resolve_proxy(f"http://{API_HOST}", None) is None
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    resolved = resolve_proxy("https://api.keyapi.ai", None)
    assert resolved is not None and resolved.url == "http://proxy.example:3128"
    assert resolved.source == "HTTPS_PROXY"
    # A loopback API (a local fake server) is never sent to the environment's proxy.
    assert resolve_proxy("http://127.0.0.1:8080", None) is None


async def test_a_proxy_that_is_down_names_the_proxy_but_not_its_password(
    tmp_path: Path,
) -> None:
    url = f"http://user:{PASSWORD}@127.0.0.1:{closed_port()}"
    async with ka.KeyAPIClient(API_KEY, base_url=f"http://{API_HOST}", proxy=url, qps=500,
                               retry_policy=ka.RetryPolicy(base_delay=0.001)) as client:
        with pytest.raises(ka.APIUnreachableError) as info:
            await ka.crawl_video_details(
                client, FakeKeyAPI().make_ids(300), ka.JsonlSink(tmp_path / "o.jsonl")
            )
    text = "".join(traceback.format_exception(info.value))
    assert "through the proxy http://127.0.0.1:" in str(info.value)
    for e in chain(info.value):
        assert PASSWORD not in repr(e) + str(e) and API_KEY not in repr(e) + str(e)
    assert PASSWORD not in text and API_KEY not in text


@pytest.mark.parametrize("credentials", [False, True])
async def test_an_https_tunnel_never_shows_the_key_to_the_proxy(credentials: bool) -> None:
    """aiohttp copies session-wide headers into the CONNECT request and sends an
    Authorization found there as Proxy-Authorization: the key must not travel that way."""
    heads: list[str] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append((await reader.readuntil(b"\r\n\r\n")).decode())
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    userinfo = f"user:{PASSWORD}@" if credentials else ""
    try:
        async with ka.KeyAPIClient(API_KEY, base_url=f"https://{API_HOST}", max_retries=0,
                                   proxy=f"http://{userinfo}127.0.0.1:{port}") as client:
            with pytest.raises(ka.APIConnectionError) as info:
                await client.video_details(["1"])
    finally:
        server.close()
        await server.wait_closed()
    (head,) = heads
    assert head.startswith(f"CONNECT {API_HOST}:443 ")
    assert API_KEY not in head and "Bearer" not in head  # it was, before
    expected = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert (f"Proxy-Authorization: {expected}" in head) is credentials
    assert PASSWORD not in str(info.value) and API_KEY not in str(info.value)


@pytest.mark.parametrize(
    "proxy",
    ["socks5://user:pw@host:1080", "http://user:pw@host:1080/?x=1", "http://user:pw@:99", "  "],
)
def test_an_unusable_proxy_is_refused_at_construction(proxy: str) -> None:
    with pytest.raises(ka.ConfigurationError) as info:
        ka.KeyAPIClient(API_KEY, proxy=proxy)
    assert "pw" not in str(info.value)


def cli_through_proxy(
    tmp_path: Path, n_ids: int, *args: str, password: str = PASSWORD
) -> tuple[int, FakeKeyAPI, ForwardProxy]:
    """``videos`` over ``n_ids`` ids, ``--proxy`` with ``password``, to a proxy that accepts
    PASSWORD only; the exit code, the API and the proxy (with what they saw)."""
    ids = tmp_path / "ids.txt"
    with LoopThread() as thread:
        api = FakeKeyAPI(api_keys=[API_KEY])
        thread.run(api.start())
        proxy = ForwardProxy({API_HOST: api.url}, credentials=("u", PASSWORD))
        thread.run(proxy.server.__aenter__())
        try:
            ids.write_text("\n".join(api.make_ids(n_ids)) + "\n")
            code = main([
                "videos", str(ids), "-o", str(tmp_path / "out.jsonl"), "--base-url",
                f"http://{API_HOST}", "--proxy",
                f"http://u:{password}@127.0.0.1:{proxy.server.port}", *args,
            ])
        finally:
            thread.run(proxy.server.__aexit__())
            thread.run(api.stop())
    return code, api, proxy


def test_the_cli_proxy_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KEYAPI_API_KEY", API_KEY)
    code, api, proxy = cli_through_proxy(tmp_path, 25, "-v")
    shown = capsys.readouterr()
    assert code == 0, shown.err
    assert len(proxy.seen) == 3 and len(api.requests) == 3
    assert PASSWORD not in shown.out + shown.err and API_KEY not in shown.out + shown.err


# -- 407 Proxy Authentication Required: fatal, typed, no password shown ------------------


def assert_proxy_refused(error: ka.ProxyAuthenticationError, proxy_port: int) -> None:
    assert error.fatal and not error.retryable and error.status == 407
    assert error.proxy == f"http://127.0.0.1:{proxy_port}"
    assert "check the proxy URL's credentials or HTTPS_PROXY" in str(error)
    shown = str(error) + repr(error) + "".join(traceback.format_exception(error))
    for e in chain(error):
        shown += repr(e) + str(e)
    assert PASSWORD not in shown and API_KEY not in shown
    # No aiohttp exception (its request_info holds the headers) anywhere in the chain.
    assert all(isinstance(e, ka.KeyAPIError) for e in chain(error))


async def test_a_407_to_the_https_tunnel_is_fatal_and_sent_once() -> None:
    connects: list[str] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connects.append((await reader.readuntil(b"\r\n\r\n")).decode())
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                     b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ka.KeyAPIClient(
            API_KEY, base_url=f"https://{API_HOST}", max_concurrency=1,
            proxy=f"http://user:{PASSWORD}@127.0.0.1:{port}",
        ) as client:
            with pytest.raises(ka.ProxyAuthenticationError) as info:
                await client.video_details(FakeKeyAPI().make_ids(30))  # three batches
    finally:
        server.close()
        await server.wait_closed()
    assert len(connects) == 1  # not retried, and no further batch started
    assert connects[0].startswith(f"CONNECT {API_HOST}:443 ")
    assert "tunnel (CONNECT)" in str(info.value) and "credentials: sent" in str(info.value)
    assert_proxy_refused(info.value, port)


async def test_a_plain_http_407_is_fatal_and_sent_once() -> None:
    async with FakeKeyAPI(api_keys=[API_KEY]) as api:
        proxy = ForwardProxy({API_HOST: api.url}, credentials=("user", "the-right-one"))
        async with proxy.server, ka.KeyAPIClient(
            API_KEY, base_url=f"http://{API_HOST}", max_concurrency=1,
            proxy=f"http://user:{PASSWORD}@127.0.0.1:{proxy.server.port}",
        ) as client:
            with pytest.raises(ka.ProxyAuthenticationError) as info:
                await client.video_details(api.make_ids(30))
            assert client.stats.credits_spent == 0
    assert len(proxy.seen) == 1 and api.requests == []  # never reached the API
    assert_proxy_refused(info.value, proxy.server.port)


def test_the_cli_aborts_on_a_407_with_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEYAPI_API_KEY", API_KEY)
    wrong = "wr0ng-PASSWORD-canary"
    code, api, proxy = cli_through_proxy(tmp_path, 300, password=wrong)
    shown = capsys.readouterr()
    assert code == 2, shown.err
    errors = [line for line in shown.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "407 Proxy Authentication Required" in errors[0]
    assert "HTTPS_PROXY" in errors[0] and "Traceback" not in shown.err
    assert api.requests == [] and len(proxy.seen) <= 8  # at most the in-flight window
    assert wrong not in shown.out + shown.err and API_KEY not in shown.out + shown.err
