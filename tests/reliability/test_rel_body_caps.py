"""Bodies are capped on the wire and after decompression: a 200 MB answer, an endless chunked
body and a gzip bomb each end in ResponseTooLargeError after about max_response_bytes, with
memory bounded (tracemalloc's peak) and the server able to push only a little more than that.

Run with ``-s`` for the figures quoted in docs/reliability.md."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from conftest import API_KEY
from reliability.hostile import Hostile

import keyapi_async as ka
from keyapi_async.testing import FakeKeyAPI

pytestmark = pytest.mark.reliability

MiB = 1024 * 1024
LIMIT = ka.DEFAULT_MAX_RESPONSE_BYTES
CHUNK = b"x" * (64 * 1024)


def gzip_bomb(members: int) -> bytes:
    """``members`` gzip members of 64 MiB of zeros each (a valid gzip stream, RFC 1952):
    160 members are 10 MB on the wire and 10 GiB once decompressed."""
    member = gzip.compress(bytes(64 * MiB), compresslevel=9)
    return member * members


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(160)


class Pusher:
    """Handlers that send more than any client should read, counting what got out."""

    def __init__(self) -> None:
        self.sent = 0

    async def _push(self, response: web.StreamResponse, request: web.Request, total: int) -> None:
        await response.prepare(request)
        try:
            while self.sent < total:
                await response.write(CHUNK)
                self.sent += len(CHUNK)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what we wanted

    async def declared(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 200 * 1000 * 1000
        await self._push(response, request, 200 * 1000 * 1000)
        return response

    async def undeclared(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await self._push(response, request, 200 * 1000 * 1000)
        return response

    async def endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await self._push(response, request, 1 << 40)  # "endless": ends when the client leaves
        return response


async def measure(url: str, **client: Any) -> tuple[ka.KeyAPIError, int, float, int]:
    """One call under tracemalloc: the error, its peak traced memory, seconds, requests."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        async with ka.KeyAPIClient(API_KEY, base_url=url, max_retries=2, **client) as c:
            with pytest.raises(ka.KeyAPIError) as info:
                await c.video_details(FakeKeyAPI().make_ids(10))
            requests = c.stats.requests
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, peak, time.perf_counter() - started, requests


@pytest.mark.parametrize("kind", ["declared", "undeclared", "endless"])
async def test_an_oversized_body_is_cut_at_the_limit(kind: str) -> None:
    pusher = Pusher()
    handler: Callable[[web.Request], Any] = getattr(pusher, kind)
    async with Hostile(handler) as server:
        err, peak, seconds, requests = await measure(server.url)
    assert isinstance(err, ka.ResponseTooLargeError)
    assert err.limit == LIMIT and err.status == 200 and not err.retryable
    assert requests == 1 == len(server.requests)  # not retried: it would be the same again
    assert peak < LIMIT + 2 * MiB  # the 200 MB is never held; 616 MiB before
    assert pusher.sent < 16 * LIMIT  # the server could push little past the limit
    print(f"\n{kind}: peak {peak / MiB:.1f} MiB, server sent {pusher.sent / MiB:.1f} MiB, "
          f"{requests} request, {seconds:.2f} s")


@pytest.mark.parametrize(
    ("encoding", "members", "where"),
    [
        ("gzip", 160, "Content-Length"),  # 10 MB, 10 GiB inflated: refused before reading
        ("gzip", 30, "decompressed"),  # 2 MB, 1.9 GiB inflated: under the wire limit
        ("deflate", 0, "decompressed"),  # one 256 MiB zlib stream, 250 KB on the wire
    ],
)
async def test_a_compression_bomb_is_cut_at_the_limit(
    encoding: str, members: int, where: str, bomb: bytes
) -> None:
    body = bomb[: len(bomb) // 160 * members] if members else zlib.compress(bytes(256 * MiB), 9)

    async def handler(request: web.Request) -> web.StreamResponse:
        # Written 64 KiB at a time, so that the server's own buffers stay out of the peak.
        response = web.StreamResponse(headers={"Content-Encoding": encoding})
        response.content_length = len(body)
        await response.prepare(request)
        try:
            for start in range(0, len(body), len(CHUNK)):
                await response.write(body[start : start + len(CHUNK)])
        except (ConnectionError, RuntimeError):
            pass  # the client hung up
        return response

    async with Hostile(handler) as server:
        err, peak, seconds, requests = await measure(server.url)
    assert isinstance(err, ka.ResponseTooLargeError)
    assert where in err.message and requests == 1
    assert peak < LIMIT + 2 * MiB  # 3.6 GiB before
    print(f"\n{encoding} bomb of {len(body) / MiB:.1f} MiB: peak {peak / MiB:.1f} MiB, "
          f"{requests} request, {seconds:.2f} s")


async def test_the_limit_is_configurable_and_compressed_answers_still_work() -> None:
    fake = FakeKeyAPI()
    ids = fake.make_ids(10, known=True)
    envelope = {"code": 0, "data": [fake.detail_record(i) for i in ids], "requestId": "r"}
    plain = web.json_response(envelope).body
    assert isinstance(plain, bytes)
    packed = gzip.compress(plain)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=packed, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async with Hostile(handler) as server:
        async with ka.KeyAPIClient(API_KEY, base_url=server.url) as client:
            assert len(await client.video_details(ids)) == 10
        assert server.requests[0].headers["Accept-Encoding"] == "gzip, deflate"
        small = len(plain) - 1  # fits on the wire (compressed), not once decompressed
        async with ka.KeyAPIClient(
            API_KEY, base_url=server.url, max_response_bytes=small
        ) as client:
            assert client.max_response_bytes == small
            with pytest.raises(ka.ResponseTooLargeError, match="decompressed") as info:
                await client.video_details(ids)
    assert info.value.limit == small
    assert "max_response_bytes" in str(info.value)


async def test_a_damaged_compressed_body_is_a_retried_transport_error() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"})

    async with Hostile(handler) as server, ka.KeyAPIClient(
        API_KEY, base_url=server.url, max_retries=1, retry_policy=ka.RetryPolicy(base_delay=0.001)
    ) as client:
        with pytest.raises(ka.APIConnectionError, match="compressed") as info:
            await client.video_details(["1"])
    assert info.value.status == 200 and len(server.requests) == 2
