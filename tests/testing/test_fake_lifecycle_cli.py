"""Start/stop on the same port, the pytest fixture, and the command line."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import aiohttp
import pytest

from keyapi_async.testing import FakeKeyAPI
from keyapi_async.testing.cli import parse_faults

from .fake_api_helpers import Get


async def test_stop_and_start_on_the_same_port(get: Get) -> None:
    server = FakeKeyAPI()
    with pytest.raises(RuntimeError):
        server.url  # noqa: B018 - not bound yet
    await server.start()
    try:
        url = server.url
        assert (await get(server, params={"video_ids": "1"})).status == 200
        with pytest.raises(RuntimeError):
            await server.start()
        await server.stop()
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(server, params={"video_ids": "1"})
        await server.start()
        assert server.url == url
        assert (await get(server, params={"video_ids": "1"})).status == 200
        assert len(server.requests) == 2  # the log survives a restart
    finally:
        await server.stop()


async def test_fixture_from_the_plugin(fake_keyapi: FakeKeyAPI, get: Get) -> None:
    assert fake_keyapi.url.startswith("http://127.0.0.1:")
    assert (await get(fake_keyapi, params={"video_ids": "1"})).status == 200


def test_plugin_imports_without_pytest_asyncio() -> None:
    code = (
        "import sys; sys.modules['pytest_asyncio'] = None\n"
        "import keyapi_async.testing.pytest_plugin as plugin\n"
        "assert not hasattr(plugin, 'fake_keyapi')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_parse_faults() -> None:
    faults = parse_faults(["http_5xx=0.25", "fail_first=2", "slow_seconds=1.5"])
    assert (faults.http_5xx, faults.fail_first, faults.slow_seconds) == (0.25, 2, 1.5)
    for bad in ("nope=1", "http_5xx", "http_5xx=lots", "http_5xx=2"):
        with pytest.raises(ValueError):
            parse_faults([bad])


async def run_cli(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keyapi_async.testing",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    return proc, line


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_cli_serves_until_signalled(session: aiohttp.ClientSession, signum: int) -> None:
    proc, line = await run_cli("--port", "0", "--api-key", "k1", "k2", "--credits", "1")
    try:
        assert line.startswith("listening on http://127.0.0.1:") and line.endswith("\n")
        url = line.split()[-1]
        headers = {"Authorization": "Bearer k2"}
        params = {"video_ids": "1"}
        path = "/v1/tiktok/video/detail/analytics"
        async with session.get(url + path, params=params, headers=headers) as resp:
            assert resp.status == 200
        async with session.get(url + path, params=params, headers=headers) as resp:
            assert resp.status == 402  # --credits 1 was spent
        async with session.get(url + "/_fake/stats") as resp:
            assert (await resp.json())["requests"] == 2
    finally:
        proc.send_signal(signum)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert proc.stdout is not None
    assert await proc.stdout.read() == b""  # exactly one line was printed


async def test_cli_rejects_bad_faults() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keyapi_async.testing",
        "--fault",
        "nope=1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2 and b"nope=1" in err


def test_gateway_options_reach_the_server() -> None:
    import argparse

    from keyapi_async.testing.cli import add_arguments, server_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--qps", "50", "--qps-mode", "gcra", "--burst", "5", "--arrival-jitter", "0.003"]
    )
    server = server_from_args(args)
    assert (server.qps, server.qps_mode, server.burst, server.arrival_jitter) == (
        50, "gcra", 5, 0.003,
    )
    with pytest.raises(ValueError, match="burst"):
        server_from_args(parser.parse_args(["--burst", "-1"]))
