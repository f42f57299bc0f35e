"""Redirects are never followed: a 3xx is a fatal RedirectError naming the location, a
redirect loop costs one request per rate-limiter permit, a cross-origin answer is never
accepted, and no exception in the chain carries the request headers."""

from __future__ import annotations

import traceback
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import API_KEY
from reliability.hostile import DETAIL, Hostile, chain, closed_port

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability


def assert_clean_chain(exc: BaseException) -> None:
    """Nothing in the chain is an aiohttp exception (their request_info holds the headers),
    and nothing in it shows the key or an Authorization header."""
    for e in chain(exc):
        assert not isinstance(e, aiohttp.ClientError), type(e)
        assert "request_info" not in vars(e)
        for text in (repr(e), str(e), repr(vars(e))):
            assert API_KEY not in text and "Bearer" not in text
    formatted = "".join(traceback.format_exception(exc))
    assert API_KEY not in formatted and "Bearer" not in formatted


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_same_origin_redirect_loop_costs_one_request_per_permit(
    status: int, tmp_path: Path
) -> None:
    async def loop(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": str(request.rel_url)})

    fake = FakeKeyAPI()
    async with Hostile(loop) as server, ka.KeyAPIClient(
        API_KEY, base_url=server.url, qps=1000, max_concurrency=4
    ) as client:
        with pytest.raises(ka.RedirectError) as info:
            await client.video_details(fake.make_ids(1))
        assert len(server.requests) == client.stats.requests == 1
        with pytest.raises(ka.RedirectError):  # a crawl: fatal, stops at once
            await ka.crawl_video_details(client, fake.make_ids(2000), ka.JsonlSink(tmp_path / "o"))
        assert len(server.requests) == client.stats.requests <= 1 + 4
    err = info.value
    assert err.status == status and err.fatal and not err.retryable
    assert err.location is not None and err.location.startswith(DETAIL)
    assert "base_url" in str(err)
    assert_clean_chain(err)


async def test_a_cross_origin_redirect_is_never_followed() -> None:
    fake = FakeKeyAPI()
    ids = fake.make_ids(5, known=True)

    async def data(request: web.Request) -> web.Response:  # answers anyone, key or not
        asked = request.query["video_ids"].split(",")
        return web.json_response({"code": 0, "data": [fake.detail_record(i) for i in asked]})

    async with Hostile(data) as elsewhere:

        async def away(request: web.Request) -> web.Response:
            return web.Response(
                status=307, headers={"Location": elsewhere.url + str(request.rel_url)}
            )

        async with Hostile(away) as server, ka.KeyAPIClient(
            API_KEY, base_url=server.url, qps=1000
        ) as client:
            with pytest.raises(ka.RedirectError) as info:
                await client.video_details(ids)
    assert elsewhere.requests == []  # neither the key nor the request went there
    assert len(server.requests) == 1
    assert info.value.location is not None and info.value.location.startswith(elsewhere.url)
    assert_clean_chain(info.value)


async def test_connection_failures_and_timeouts_chain_to_no_aiohttp_exception() -> None:
    port = closed_port()
    async with ka.KeyAPIClient(
        API_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0
    ) as client:
        with pytest.raises(ka.APIConnectionError) as refused:
            await client.video_details(["1"])
    assert_clean_chain(refused.value)

    async def never(request: web.Request) -> web.Response:
        await server.hold()  # no answer before the client times out
        return web.Response()

    server = Hostile(never)
    async with server, ka.KeyAPIClient(
        API_KEY, base_url=server.url, max_retries=0, timeout=0.2
    ) as client:
        with pytest.raises(ka.APIConnectionError, match="no complete answer") as slow:
            await client.video_details(["1"])
    assert_clean_chain(slow.value)
