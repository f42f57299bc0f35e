"""The gateways benchmark's limiters work end to end: nginx ``limit_req`` from the config
writer (benchmarks/nginx.py) and the ``limits`` proxy (benchmarks/limits_proxy.py), each in
its own process in front of a fake server, turn a burst beyond the rate into 429s.

Outcomes only: the rates are per minute, so a handful of back-to-back requests is a burst
however slow the machine, and no assertion depends on timing. nginx comes from PATH or
``/usr/sbin`` (``.ci/nginx.sh install`` is tried when it is missing); the nginx tests skip
only when it cannot be had. No ``__init__.py`` here: a package named after the repo's
``benchmarks`` would be confusing, and the repo root is put on ``sys.path`` explicitly.
"""

from __future__ import annotations

import importlib
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

REPO = Path(__file__).resolve().parents[2]
DETAIL = "/v1/tiktok/video/detail/analytics?video_ids=7100000000000000000"
KEYS = ("k-nginx-a", "k-nginx-b", "k-burst", "k-page", "k-moving-a", "k-moving-b", "k-fixed")


def _bench(name: str) -> ModuleType:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"benchmarks.{name}")


def _get(base_url: str, key: str) -> tuple[int, bytes]:
    request = urllib.request.Request(base_url + DETAIL, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _statuses(base_url: str, key: str, n: int) -> list[int]:
    return [_get(base_url, key)[0] for _ in range(n)]


@pytest.fixture(scope="module")
def origin() -> Iterator[Any]:
    """The fake server, no limit and no latency of its own, in its own process."""
    harness = _bench("harness")
    with harness.fake_server(keys=KEYS) as server:
        yield server


@pytest.fixture(scope="module")
def nginx_exe() -> str:
    exe, why = _bench("nginx").ensure_nginx()
    if exe is None:
        pytest.skip(f"nginx cannot be had here: {why}")
    return str(exe)


def test_nginx_config_has_one_zone_and_server_per_cell(tmp_path: Path) -> None:
    nginx = _bench("nginx")
    cells = [
        nginx.NginxCell("strict", 18001, 50, "127.0.0.1:18000"),
        nginx.NginxCell("b5", 18002, 20, "127.0.0.1:18000", burst=5, nodelay=True),
        nginx.NginxCell("b10", 18003, 10, "127.0.0.1:18009", per="m", burst=10),
    ]
    conf = nginx.nginx_conf(tmp_path, cells)
    assert "limit_req_status 429;" in conf
    assert "zone=strict:1m rate=50r/s;" in conf
    assert "zone=b10:1m rate=10r/m;" in conf
    assert "limit_req zone=strict;" in conf
    assert "limit_req zone=b5 burst=5 nodelay;" in conf
    assert "limit_req zone=b10 burst=10;" in conf
    assert conf.count("listen 127.0.0.1:") == 3
    assert conf.count("upstream origin") == 2  # one keep-alive pool per distinct origin
    # Everything nginx writes stays under the prefix: nothing points at /var or /etc.
    assert "/var/" not in conf and "/etc/" not in conf
    with pytest.raises(ValueError):
        nginx.nginx_conf(tmp_path, [nginx.NginxCell("bad name", 1, 1, "127.0.0.1:2")])


def test_nginx_limit_req_answers_429_beyond_the_rate(origin: Any, nginx_exe: str) -> None:
    nginx = _bench("nginx")
    upstream = origin.url.removeprefix("http://")
    strict = nginx.NginxCell("strict", nginx.free_port(), 1, upstream, per="m")
    burst = nginx.NginxCell("burst", nginx.free_port(), 1, upstream, per="m", burst=2,
                            nodelay=True)
    with nginx.nginx([strict, burst], nginx_exe) as prefix:
        # No burst: the first request passes; the next ones, far sooner than 1 minute
        # after it, are refused with 429 (limit_req_status), not nginx's default 503.
        status, body = _get(strict.url, "k-nginx-a")
        assert status == 200
        assert msgspec.json.decode(body)["code"] == 0  # the origin's own answer
        assert _statuses(strict.url, "k-nginx-a", 3) == [429, 429, 429]
        # The zone is keyed by the API key: another key has its own budget.
        assert _get(strict.url, "k-nginx-b")[0] == 200
        # burst=2 nodelay: three requests at once, then 429.
        assert _statuses(burst.url, "k-burst", 5) == [200, 200, 200, 429, 429]
        assert prefix.exists()
    assert not prefix.exists()  # the throwaway prefix is gone with the process
    accepted = [r for r in origin.requests() if r["key"] in ("k-nginx-a", "k-nginx-b", "k-burst")]
    assert len(accepted) == 5  # refused requests never reached the origin


def test_gateways_recognize_nginx_429_page(origin: Any, nginx_exe: str) -> None:
    nginx, gateways = _bench("nginx"), _bench("gateways")
    cell = nginx.NginxCell("page", nginx.free_port(), 1, origin.url.removeprefix("http://"),
                           per="m")
    with nginx.nginx([cell], nginx_exe):
        first, second = _get(cell.url, "k-page"), _get(cell.url, "k-page")
    assert not gateways.is_429(*first)
    assert second[0] == 429 and b"<html>" in second[1]
    assert gateways.is_429(*second)


@pytest.mark.parametrize("strategy", ["moving", "fixed"])
def test_limits_proxy_answers_429_beyond_the_rate(origin: Any, strategy: str) -> None:
    pytest.importorskip("limits", reason="the limits library: pip install 'keyapi-async[bench]'")
    proxy = _bench("limits_proxy")
    cell = proxy.ProxyCell(strategy, 2, origin.url, per="minute")
    key = f"k-{strategy}-a" if strategy == "moving" else "k-fixed"
    with proxy.limits_proxy([cell, cell]) as (url, other):
        statuses = _statuses(url, key, 4)
        refused = _get(url, key)
        fresh = _get(url, "k-moving-b")
        # Each cell is its own limiter: the same key starts afresh on the other port.
        elsewhere = _get(other, key)
    assert statuses == [200, 200, 429, 429]
    assert refused[0] == 429 and b"Rate limit exceeded" in refused[1]
    assert fresh[0] == 200 and msgspec.json.decode(fresh[1])["code"] == 0
    assert elsewhere[0] == 200


def test_sustained_rate_leaves_out_the_warm_up() -> None:
    gateways = _bench("gateways")
    # A burst of 10 at t=0, then one arrival every 0.1 s from t=1 to t=3.
    times = [0.0] * 10 + [1.0 + i / 10 for i in range(21)]
    assert gateways.sustained_rate(times, 0.5) == pytest.approx(10.0)
    assert gateways.sustained_rate(times, 0.0) == pytest.approx(30 / 3.0)
    assert gateways.sustained_rate([], 1.0) == 0.0
    assert gateways.sustained_rate([0.0, 0.5], 1.0) == 0.0


def test_is_429_reads_status_and_envelope_code() -> None:
    gateways = _bench("gateways")
    assert gateways.is_429(429, b'{"error": "Rate limit exceeded"}')
    assert gateways.is_429(200, b'{"code":429,"message":"too many","data":null}')
    assert not gateways.is_429(200, b'{"code":0,"message":"success","data":[]}')
    assert not gateways.is_429(200, b"<html>not json</html>")
    assert not gateways.is_429(500, b'{"code":429}')
