"""Gateways: the SDK against real third-party rate limiters in front of the fake server.

Every limiter runs in its own process in front of the fake server (its own process too,
no limit of its own, latency L +- 25 %), keyed by the API key, rate R:

* nginx ``limit_req`` with ``limit_req_status 429``: no burst, ``burst=5 nodelay``,
  ``burst=10`` (benchmarks/nginx.py; Debian's nginx, installed by ``.ci/nginx.sh install``
  when missing, else the rows say n/a);
* the ``limits`` library's moving and fixed windows in a small aiohttp proxy
  (benchmarks/limits_proxy.py);
* the fake server's own modes: sliding, fixed, token_bucket, and gcra with burst 0 (nginx's
  semantics; n/a until FakeKeyAPI has it).

In each cell three contenders run one after the other (order reversed every other cell),
each for the same time on a fresh key: the SDK with ``qps=R``, the SDK with
``qps="auto"`` (not told R) and the naive baseline (plain aiohttp, ``AsyncLimiter(R, 1)``,
``NAIVE_WORKERS`` concurrent workers, a 429 simply retried through the limiter). The SDK
runs ``crawl_video_details`` with ``max_concurrency=None``, stopped after the run's time.

Figures: achieved / R is the *sustained* rate, accepted arrivals at the origin (HTTP 200,
code 0) per second after the first ``warm-up`` seconds of each run (so the naive
baseline's start-up burst and the SDK's ramp are left out of it, and counted in the
429s); 429s are answers with HTTP or body code 429 as a % of the contender's requests,
over the whole run; "raised" is a call that raised, "RL ids" ids that failed with
RateLimitError. Then: the same strict cell with another process busy-looping on one core
(``tc netem`` is not available to add loopback jitter); ``qps="auto"`` against sliding
windows of R = 20 and 50 for 60 s (the pacing chart: ``client.qps`` over time); a 429
storm (a crawl of 1,000,000 ids against a server answering only 429, with a small
``rate_limit_patience``); four processes sharing one RedisRateLimiter with ``qps="auto"``.
A row whose feature is missing (nginx, ``qps="auto"``, ``rate_limit_patience``, the fake's
gcra mode, Redis) says ``n/a: why`` instead of a figure.

Run alone: ``python -m benchmarks.gateways [--quick | --complete]`` (or ``python -m
benchmarks --only gateways``). The full section runs every limiter at R = 10, 20, 50 and
50 ms, and nginx without burst at 400 ms too (~8 minutes); ``--complete`` adds every other
limiter at 400 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import itertools
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiolimiter import AsyncLimiter

import keyapi_async as ka
from keyapi_async.client.details import DETAIL_PATH

from .harness import SectionResult, ServerProcess, fake_server, print_table, stop_process
from .limits_proxy import ProxyCell, limits_proxy
from .nginx import NginxCell, ensure_nginx, free_port, nginx

TITLE = "Gateways: real rate limiters in front of the fake server"
REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "docs" / "assets" / "gateways-auto-pacing.png"
JITTER = 0.25  # latency +- 25 %
NAIVE_WORKERS = 32
NAIVE_MAX_TRIES = 50  # a batch retried this often on 429 counts as failed (never seen)
IDS_PER_REQUEST = 10
#: Seconds a contender's run gets on top of its own time before it is called stuck.
_SLACK = 60.0
_keys = itertools.count()


@dataclass(frozen=True)
class Gateway:
    """A limiter in front of the origin, and the targets it is judged by."""

    kind: str  # nginx | limits | fake
    mode: str  # the limits strategy or the fake's qps mode ("" for nginx)
    label: str
    strict: bool  # nginx's no-burst semantics: the looser targets apply
    burst: int = 0  # nginx limit_req burst=
    nodelay: bool = False  # nginx limit_req nodelay

    @property
    def floor(self) -> float:
        """Sustained achieved / R to reach."""
        return 0.85 if self.strict else 0.95

    @property
    def max_429_pct(self) -> float:
        """429s as a % of requests, at most."""
        return 5.0 if self.strict else 1.0


GATEWAYS = {
    "nginx": Gateway("nginx", "", "nginx limit_req, no burst", strict=True),
    "nginx-b5": Gateway("nginx", "", "nginx burst=5 nodelay", strict=False, burst=5,
                        nodelay=True),
    "nginx-b10": Gateway("nginx", "", "nginx burst=10", strict=False, burst=10),
    "limits-moving": Gateway("limits", "moving", "limits moving window", strict=False),
    "limits-fixed": Gateway("limits", "fixed", "limits fixed window", strict=False),
    "fake-sliding": Gateway("fake", "sliding", "fake sliding window", strict=False),
    "fake-fixed": Gateway("fake", "fixed", "fake fixed window", strict=False),
    "fake-token_bucket": Gateway("fake", "token_bucket", "fake token bucket", strict=False),
    # GCRA with burst 0 is nginx's limit_req without burst: judged like it.
    "fake-gcra": Gateway("fake", "gcra", "fake gcra, burst 0", strict=True),
}


@dataclass(frozen=True)
class Cell:
    """One limiter at one rate and latency."""

    gateway: Gateway
    rate: int
    latency: float

    @property
    def label(self) -> str:
        return f"{self.gateway.label}, R={self.rate}, {self.latency * 1000:.0f} ms"


@dataclass(frozen=True)
class Plan:
    """Sizes: the cells and how long each part runs."""

    cells: tuple[Cell, ...]
    run_seconds: float  # per contender per cell
    warmup: float  # left out of the sustained rate
    auto_rates: tuple[int, ...]  # the dedicated qps="auto" runs (and chart)
    auto_seconds: float
    auto_warmup: float
    storm_ids: int
    storm_patience: float
    loaded: bool
    redis_seconds: float | None


def plan(quick: bool, complete: bool = False) -> Plan:
    """A ~60 s smoke run; the full section (~8 minutes): every limiter at R = 10, 20, 50
    and 50 ms, nginx without burst at 400 ms too; or ``complete``: every limiter at both
    latencies (~13 minutes)."""
    g = GATEWAYS
    if quick:
        cells = tuple(
            Cell(g[name], 20, 0.05)
            for name in ("nginx", "limits-moving", "fake-sliding", "fake-gcra")
        )
        return Plan(cells, 2.0, 0.5, (), 0.0, 0.0, 100_000, 5.0, False, None)
    cells_: list[Cell] = []
    for name in GATEWAYS:
        # 400 ms matters most where the gateway is strict (nginx without burst, the
        # issue's worst case): there the in-flight cap, sized from latency, must not let
        # requests bunch up. The other limiters at 400 ms only with ``complete``.
        for latency in (0.05, 0.4) if complete or name == "nginx" else (0.05,):
            for rate in (10, 20, 50):
                cells_.append(Cell(g[name], rate, latency))
    return Plan(tuple(cells_), 2.5, 1.0, (20, 50), 60.0, 15.0, 1_000_000, 10.0, True, 30.0)


# -- what each contender did ----------------------------------------------------------


@dataclass
class Outcome:
    """One contender's run, as the client and the origin saw it."""

    requests: int = 0
    rate_limited: int = 0
    raised: str = ""  # the error a call raised, if one did
    failed_rl: int = 0  # ids failed with RateLimitError
    failed_other: int = 0
    started: float = 0.0  # time.monotonic() at the start (one clock for all processes)
    accepted: list[float] = field(default_factory=list)  # origin arrival times, 200 + code 0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (s from start, qps)
    seconds: float = 0.0

    def pct_429(self) -> float:
        return 100.0 * self.rate_limited / self.requests if self.requests else 0.0

    def sustained(self, warmup: float) -> float:
        """Accepted arrivals per second after ``warmup`` s from the first one."""
        return sustained_rate(self.accepted, warmup)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "rate_limited": self.rate_limited,
            "raised": self.raised, "failed_rl": self.failed_rl,
            "failed_other": self.failed_other, "accepted": len(self.accepted),
            "seconds": self.seconds,
        }


def sustained_rate(times: Sequence[float], warmup: float) -> float:
    """Arrivals per second over those at least ``warmup`` s after the first (sorted)."""
    if not times:
        return 0.0
    after = [t for t in times if t >= times[0] + warmup]
    if len(after) < 2 or after[-1] <= after[0]:
        return 0.0
    return (len(after) - 1) / (after[-1] - after[0])


class _Code(msgspec.Struct):
    code: int = 0


_CODE = msgspec.json.Decoder(_Code)


def is_429(status: int, body: bytes) -> bool:
    """HTTP 429 (any body: nginx's HTML page, a proxy's JSON) or an envelope code 429."""
    if status == 429:
        return True
    try:
        return status == 200 and _CODE.decode(body).code == 429
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False


class NullSink:
    """A sink that keeps nothing (the crawl's own accounting is what is measured)."""

    async def write(self, records: Sequence[Any]) -> None:
        """Drop the records."""

    async def close(self) -> None:
        """Nothing to flush."""


def make_ids(n: int) -> list[str]:
    """``n`` distinct 19-digit ids (each run has its own key, so ids may repeat across runs)."""
    return [str(7_100_000_000_000_000_000 + i * 7919) for i in range(n)]


# -- feature detection (gw's issue-11 work may not be merged yet) --------------------


def auto_unavailable() -> str | None:
    """Why ``KeyAPIClient(qps="auto")`` cannot be used here, or None."""
    kwargs: dict[str, Any] = {"qps": "auto"}
    try:
        ka.KeyAPIClient("probe", base_url="http://127.0.0.1:9", **kwargs)
    except Exception as exc:
        return f"KeyAPIClient(qps='auto') refused ({type(exc).__name__}: {exc})"
    return None


def patience_unavailable() -> str | None:
    """Why ``KeyAPIClient(rate_limit_patience=...)`` cannot be used here, or None."""
    if "rate_limit_patience" in inspect.signature(ka.KeyAPIClient.__init__).parameters:
        return None
    return "KeyAPIClient has no rate_limit_patience"


def gcra_unavailable() -> str | None:
    """Why the fake server cannot run ``--qps-mode gcra --burst 0``, or None."""
    from keyapi_async.testing.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = parser.format_help()
    if "gcra" in text and "--burst" in text:
        return None
    return "the fake server has no --qps-mode gcra / --burst"


def fake_mode_args(mode: str) -> list[str]:
    """The fake server's options for one of its qps modes."""
    if mode == "gcra":
        return ["--qps-mode", "gcra", "--burst", "0"]
    return ["--qps-mode", mode]


def latency_args(latency: float) -> list[str]:
    return ["--latency", f"{latency:g}", "--jitter", f"{latency * JITTER:g}"]


# -- the contenders --------------------------------------------------------------------


async def _sample(client: ka.KeyAPIClient, out: Outcome, stop: asyncio.Event) -> None:
    """``client.qps`` every 0.25 s until ``stop``."""
    while True:
        out.samples.append((time.monotonic() - out.started, float(client.qps)))
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def run_sdk(
    base_url: str, key: str, qps: float | str, seconds: float, ids: Sequence[str],
    *, sample: bool = False, **client_kw: Any,
) -> Outcome:
    """``crawl_video_details`` for ``seconds`` (then stopped); the client's view."""
    out = Outcome(started=time.monotonic())
    stop = asyncio.Event()
    timer = asyncio.get_running_loop().call_later(seconds, stop.set)
    report: ka.CrawlReport | None = None
    kwargs: dict[str, Any] = {"qps": qps, "max_concurrency": None, **client_kw}
    async with ka.KeyAPIClient(key, base_url=base_url, **kwargs) as client:
        sampler = asyncio.create_task(_sample(client, out, stop)) if sample else None
        try:
            report = await ka.crawl_video_details(client, ids, NullSink(), stop=stop)
        except ka.KeyAPIError as exc:
            out.raised = f"{type(exc).__name__}: {exc}"[:300]
            report = getattr(exc, "report", None)
        finally:
            timer.cancel()
            stop.set()
            if sampler is not None:
                await sampler
        out.requests = client.stats.requests
        out.rate_limited = client.stats.rate_limited
    if report is not None:
        for reason in report.failed.values():
            if reason.startswith("RateLimitError"):
                out.failed_rl += 1
            else:
                out.failed_other += 1
    out.seconds = time.monotonic() - out.started
    return out


async def run_naive(base_url: str, key: str, rate: float, seconds: float,
                    ids: Sequence[str]) -> Outcome:
    """aiohttp + ``AsyncLimiter(rate, 1)`` and a fixed pool of workers; 429s retried."""
    out = Outcome(started=time.monotonic())
    limiter = AsyncLimiter(rate, 1)
    deadline = out.started + seconds
    batches = iter([ids[i : i + IDS_PER_REQUEST] for i in range(0, len(ids), IDS_PER_REQUEST)])
    url = base_url + DETAIL_PATH
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"Authorization": f"Bearer {key}"}
    on_wire: set[int] = set()
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def worker(me: int) -> None:
            while time.monotonic() < deadline:
                batch = next(batches, None)
                if batch is None:
                    return
                for _ in range(NAIVE_MAX_TRIES):
                    async with limiter:
                        if time.monotonic() >= deadline:
                            return  # time is up: this batch is simply not attempted
                        on_wire.add(me)
                        try:
                            async with session.get(
                                url, params={"video_ids": ",".join(batch)}
                            ) as resp:
                                status, body = resp.status, await resp.read()
                        except aiohttp.ClientError:
                            out.requests += 1
                            out.failed_other += len(batch)
                            break
                        finally:
                            on_wire.discard(me)
                    out.requests += 1
                    if is_429(status, body):
                        out.rate_limited += 1
                        continue
                    if status != 200:
                        out.failed_other += len(batch)
                    break
                else:
                    out.failed_rl += len(batch)

        tasks = [asyncio.create_task(worker(i)) for i in range(NAIVE_WORKERS)]
        await asyncio.wait(tasks, timeout=seconds)
        # Time is up: workers queued on the limiter give up; answers on the wire finish.
        for i, task in enumerate(tasks):
            if i not in on_wire:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out.seconds = time.monotonic() - out.started
    return out


def _observe(origin: ServerProcess, key: str, out: Outcome) -> Outcome:
    """Attach the origin's accepted arrivals for ``key`` and clear the origin's log."""
    log = origin.requests()
    out.accepted = sorted(
        r["time"] for r in log if r["key"] == key and r["status"] == 200 and not r["code"]
    )
    origin.reset()
    return out


def run_contender(
    name: str, base_url: str, origin: ServerProcess, key: str, rate: int, seconds: float,
    **kw: Any,
) -> Outcome:
    """One contender for ``seconds`` through ``base_url``; bounded in time."""
    ids = make_ids(int(rate * seconds * IDS_PER_REQUEST * 1.5) + 100)
    coro = (
        run_naive(base_url, key, rate, seconds, ids) if name == "naive"
        else run_sdk(base_url, key, "auto" if name == "auto" else rate, seconds, ids, **kw)
    )
    try:
        out = asyncio.run(asyncio.wait_for(coro, seconds + _SLACK))
    except TimeoutError:
        out = Outcome(raised=f"stuck: not done {seconds + _SLACK:g} s after the start")
    return _observe(origin, key, out)


CONTENDERS = ("qps=R", "auto", "naive")


def run_cell(
    cell: Cell, base_url: str, origin: ServerProcess, keys: Iterator[str], seconds: float,
    flip: bool, auto_na: str | None,
) -> dict[str, Outcome | str]:
    """The three contenders, one after the other; n/a reasons for those that cannot run."""
    results: dict[str, Outcome | str] = {}
    for name in CONTENDERS[::-1] if flip else CONTENDERS:
        if name == "auto" and auto_na:
            results[name] = auto_na
            continue
        results[name] = run_contender(name, base_url, origin, next(keys), cell.rate, seconds)
    return results


# -- judging and printing --------------------------------------------------------------


def _raw(runs: dict[str, Outcome | str]) -> dict[str, Any]:
    return {name: run if isinstance(run, str) else run.summary() for name, run in runs.items()}


def row_name(label: str, contender: str) -> str:
    """The table row for one contender in one cell."""
    return f"{label}: {'SDK ' if contender != 'naive' else ''}{contender}"


def _na(result: SectionResult, name: str, why: str) -> None:
    result.add(name, None, "", note=f"n/a: {why}")


def _describe(out: Outcome) -> str:
    raised = out.raised or "0"
    return (f"429s {out.pct_429():.1f} % ({out.rate_limited} of {out.requests}), "
            f"raised {raised}, RL ids {out.failed_rl}, other failed ids {out.failed_other}")


def judge_cell(result: SectionResult, cell: Cell, runs: dict[str, Outcome | str],
               warmup: float, label: str | None = None) -> None:
    """A row per contender: achieved / R; the SDK's qps=R judged by the issue's targets."""
    g = cell.gateway
    for name in CONTENDERS:
        run = runs[name]
        row = row_name(label or cell.label, name)
        if isinstance(run, str):
            _na(result, row, run)
            continue
        ratio = run.sustained(warmup) / cell.rate
        clean = not run.raised and run.failed_rl == 0
        if name == "qps=R":
            target = f">= {g.floor}x, 429s <= {g.max_429_pct:g} %, none raised"
            ok = ratio >= g.floor and run.pct_429() <= g.max_429_pct and clean
            result.add(row, ratio, "x", target=target, ok=ok, note=_describe(run))
        elif name == "auto":
            # A short run is mostly the ramp: only "nothing raised or failed" is judged here;
            # the sustained targets for qps="auto" are the 60 s rows below.
            result.add(row, ratio, "x", target="none raised (rate: see auto rows)",
                       ok=clean, note=_describe(run))
        else:
            result.add(row, ratio, "x", note=_describe(run))


def grid_line(cell: Cell, runs: dict[str, Outcome | str], warmup: float,
              label: str | None = None) -> str:
    """A markdown row: achieved / R and 429 % per contender (raised / RL ids when any)."""
    cells = []
    for name in CONTENDERS:
        run = runs.get(name)
        if run is None:
            cells.append("-")
        elif isinstance(run, str):
            cells.append("n/a")
        else:
            text = f"{run.sustained(warmup) / cell.rate:.2f}, {run.pct_429():.1f} %"
            if run.raised or run.failed_rl:
                text += f", **raised {1 if run.raised else 0}, RL ids {run.failed_rl}**"
            cells.append(text)
    return (f"| {label or cell.gateway.label} | {cell.rate} | {cell.latency * 1000:.0f} | "
            + " | ".join(cells) + " |")


GRID_HEADER = (
    "| limiter | R | latency ms | SDK qps=R: achieved/R, 429s | SDK qps=\"auto\" | "
    "naive AsyncLimiter(R, 1) |\n|---|---|---|---|---|---|"
)


# -- the parts of the section ----------------------------------------------------------


@contextlib.contextmanager
def _origins(
    latencies: Sequence[float], keys: Sequence[str]
) -> Iterator[dict[float, ServerProcess]]:
    """One unlimited fake server per latency: the origin behind nginx and the proxy."""
    with contextlib.ExitStack() as stack:
        yield {
            lat: stack.enter_context(fake_server(*latency_args(lat), keys=keys))
            for lat in latencies
        }


def _proxied_cells(
    result: SectionResult, cells: Sequence[Cell], p: Plan, auto_na: str | None,
    grid: list[str], loaded_cell: Cell | None,
) -> dict[str, Any]:
    """The nginx and limits cells (one nginx, one proxy process, one origin per latency);
    then the loaded-core row on the strictest of them."""
    raw: dict[str, Any] = {}
    if not cells and loaded_cell is None:
        return raw
    latencies = sorted({c.latency for c in [*cells, *([loaded_cell] if loaded_cell else [])]})
    keys = [f"gw{next(_keys)}" for _ in range(3 * (len(cells) + 1))]
    key_iter = iter(keys)
    exe, why = ensure_nginx()
    with _origins(latencies, keys) as origins, contextlib.ExitStack() as stack:
        urls: dict[Cell, str] = {}
        nginx_cells = [c for c in cells if c.gateway.kind == "nginx"]
        if loaded_cell is not None and loaded_cell not in nginx_cells:
            nginx_cells.append(loaded_cell)
        if nginx_cells and exe is not None:
            specs = []
            for i, c in enumerate(nginx_cells):
                spec = NginxCell(
                    f"cell{i}", free_port(), c.rate,
                    upstream=origins[c.latency].url.removeprefix("http://"),
                    burst=c.gateway.burst, nodelay=c.gateway.nodelay,
                )
                specs.append(spec)
                urls[c] = spec.url
            stack.enter_context(nginx(specs, exe))
        limits_cells = [c for c in cells if c.gateway.kind == "limits"]
        if limits_cells:
            proxy_urls = stack.enter_context(limits_proxy([
                ProxyCell(c.gateway.mode, c.rate, origins[c.latency].url) for c in limits_cells
            ]))
            urls.update(zip(limits_cells, proxy_urls, strict=True))
        for i, cell in enumerate(cells):
            if cell not in urls:
                for name in CONTENDERS:
                    _na(result, row_name(cell.label, name), why or "not started")
                grid.append(grid_line(cell, dict.fromkeys(CONTENDERS, "n/a"), p.warmup))
                continue
            runs = run_cell(cell, urls[cell], origins[cell.latency], key_iter, p.run_seconds,
                            flip=bool(i % 2), auto_na=auto_na)
            judge_cell(result, cell, runs, p.warmup)
            grid.append(grid_line(cell, runs, p.warmup))
            raw[cell.label] = _raw(runs)
        if loaded_cell is not None:
            label = f"{loaded_cell.label}, another process busy on one core"
            if loaded_cell not in urls:
                _na(result, label, why or "not started")
            else:
                with busy_core():
                    runs = run_cell(loaded_cell, urls[loaded_cell], origins[loaded_cell.latency],
                                    key_iter, p.run_seconds, flip=False, auto_na=auto_na)
                judge_cell(result, loaded_cell, runs, p.warmup, label=label)
                grid.append(grid_line(loaded_cell, runs, p.warmup,
                                      label=f"{loaded_cell.gateway.label}, 1 core busy"))
                raw[label] = _raw(runs)
    return raw


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    """Another process spinning on one core for the duration (tc netem is not available)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        stop_process(proc)


def _fake_cells(result: SectionResult, cells: Sequence[Cell], p: Plan, auto_na: str | None,
                grid: list[str]) -> dict[str, Any]:
    """The fake server's own modes: one server process per cell."""
    raw: dict[str, Any] = {}
    gcra_na = gcra_unavailable()
    for i, cell in enumerate(cells):
        if cell.gateway.mode == "gcra" and gcra_na:
            for name in CONTENDERS:
                _na(result, row_name(cell.label, name), gcra_na)
            grid.append(grid_line(cell, dict.fromkeys(CONTENDERS, "n/a"), p.warmup))
            continue
        keys = [f"gw{next(_keys)}" for _ in range(3)]
        args = ["--qps", str(cell.rate), *fake_mode_args(cell.gateway.mode),
                *latency_args(cell.latency)]
        with fake_server(*args, keys=keys) as server:
            runs = run_cell(cell, server.url, server, iter(keys), p.run_seconds,
                            flip=bool(i % 2), auto_na=auto_na)
        judge_cell(result, cell, runs, p.warmup)
        grid.append(grid_line(cell, runs, p.warmup))
        raw[cell.label] = _raw(runs)
    return raw


def _auto_rows(result: SectionResult, p: Plan, auto_na: str | None) -> dict[str, Any]:
    """qps="auto" for a minute against sliding windows it is not told; the pacing chart."""
    raw: dict[str, Any] = {}
    series: list[tuple[int, Outcome, str]] = []
    for rate in p.auto_rates:
        label = f"qps='auto' vs fake sliding window R={rate}, 50 ms, {p.auto_seconds:g} s"
        key = f"gw{next(_keys)}"
        args = ["--qps", str(rate), "--qps-mode", "sliding", *latency_args(0.05)]
        with fake_server(*args, keys=[key]) as server:
            if auto_na:
                _na(result, label, auto_na)
                # The chart still shows something true meanwhile: qps=R's pacing, shorter.
                out = run_contender("qps=R", server.url, server, key, rate, 15.0, sample=True)
                series.append((rate, out, f"qps={rate} (qps='auto' n/a in this build)"))
                continue
            out = run_contender("auto", server.url, server, key, rate, p.auto_seconds,
                                sample=True)
        ratio = out.sustained(p.auto_warmup) / rate
        reached = _first_second_at(out.accepted, 0.85 * rate)
        result.add(
            f"{label}: sustained after {p.auto_warmup:g} s / R", ratio, "x", target=">= 0.85x",
            ok=ratio >= 0.85,
            note=f"1-s accepted rate first >= 0.85 R at {reached}; pacing at the end "
                 f"{out.samples[-1][1]:.1f} qps" if out.samples else "",
        )
        result.add(
            f"{label}: 429s", out.pct_429(), "%", target="<= 3 %, none raised",
            ok=out.pct_429() <= 3.0 and not out.raised and out.failed_rl == 0,
            note=_describe(out),
        )
        series.append((rate, out, "qps='auto'"))
        raw[label] = {**out.summary(), "samples": out.samples}
    if series:
        note = write_pacing_chart(series, CHART)
        result.notes.append(note)
        raw["chart"] = note
    return raw


def _first_second_at(times: Sequence[float], rate: float) -> str:
    """When (s from the first arrival) a one-second bin first held >= ``rate`` arrivals."""
    if not times:
        return "never"
    start = times[0]
    bins: dict[int, int] = {}
    for t in times:
        bins[int(t - start)] = bins.get(int(t - start), 0) + 1
    for second in sorted(bins):
        if bins[second] >= math.floor(rate):
            return f"{second}-{second + 1} s"
    return "never"


def write_pacing_chart(series: Sequence[tuple[int, Outcome, str]], path: Path) -> str:
    """client.qps over time, with the origin's accepted arrivals per second, one panel
    per R; returns a note (what was written, or why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "pacing chart skipped: matplotlib is missing"
    fig, axes = plt.subplots(1, len(series), figsize=(5.2 * len(series), 3.6), squeeze=False)
    for ax, (rate, out, label) in zip(axes[0], series, strict=True):
        if out.accepted:
            t0 = out.started
            last = int(out.accepted[-1] - t0) + 1
            counts = [0] * max(last, 1)
            for t in out.accepted:
                counts[min(int(t - t0), len(counts) - 1)] += 1
            ax.bar([s + 0.5 for s in range(len(counts))], counts, width=1.0, color="#cfd8dc",
                   label="accepted at the server, per second")
        if out.samples:
            ax.step([s[0] for s in out.samples], [s[1] for s in out.samples], where="post",
                    color="#1565c0", linewidth=1.8, label=f"pacing rate, {label}")
        ax.axhline(rate, color="#c62828", linestyle="--", linewidth=1,
                   label=f"server limit R={rate} (sliding window)")
        ax.axhline(0.85 * rate, color="#c62828", linestyle=":", linewidth=0.8,
                   label="0.85 R")
        ax.set_xlabel("seconds from start")
        ax.set_ylabel("requests / s")
        ax.set_ylim(0, rate * 1.35)
        ax.set_title(f"R = {rate}")
        ax.legend(fontsize=7, loc="lower right")
    if all("n/a" in label for _, _, label in series):
        title = ("preliminary: qps='auto' is not in this build, so the fixed qps=R pacing is "
                 "shown; rerun the gateways benchmark to draw qps='auto'")
    else:
        title = "qps='auto': pacing rate (client.qps) against a limit it is not told"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"pacing chart written to {path}"


def _storm_row(result: SectionResult, p: Plan) -> dict[str, Any]:
    """A crawl of many ids against a server answering only 429, with a small patience."""
    label = f"429 storm: {p.storm_ids:,}-id crawl, rate_limit_patience={p.storm_patience:g} s"
    why = patience_unavailable()
    if why:
        _na(result, label, why)
        return {}
    key = f"gw{next(_keys)}"
    n, patience = p.storm_ids, p.storm_patience

    async def crawl() -> tuple[ka.CrawlReport | None, str, float]:
        ids = (str(7_100_000_000_000_000_000 + i * 7919) for i in range(n))
        t0 = time.monotonic()
        error = ""
        report: ka.CrawlReport | None = None
        kwargs: dict[str, Any] = {"qps": 50, "rate_limit_patience": patience}
        async with ka.KeyAPIClient(key, base_url=server.url, **kwargs) as client:
            try:
                report = await ka.crawl_video_details(client, ids, NullSink())
            except ka.KeyAPIError as exc:
                error = f"{type(exc).__name__}: {exc}"
                report = getattr(exc, "report", None)
        if report is not None and report.aborted and not error:
            error = report.aborted
        return report, error, time.monotonic() - t0

    with fake_server("--fault", "body_429=1", *latency_args(0.05), keys=[key]) as server:
        try:
            report, error, seconds = asyncio.run(asyncio.wait_for(crawl(), patience + 120))
        except TimeoutError:
            result.add(f"{label}: seconds to end", None, "s",
                       note=f"did not end within patience + 120 s ({patience + 120:g} s)")
            return {"timeout": True}
    limit = patience + 5
    result.add(f"{label}: seconds to end", seconds, "s", target=f"<= {limit:g} s",
               ok=seconds <= limit, note=error[:240] or "ended without an error")
    accounted = report.accounted if report is not None else 0
    detail = (
        f"fetched {report.fetched}, missing {report.missing}, failed {len(report.failed)}, "
        f"not attempted {report.not_attempted}" if report is not None else "no report"
    )
    result.add(f"{label}: ids accounted for", accounted, "ids", target=f"= {n:,}",
               ok=accounted == n and bool(error), note=detail)
    return {"seconds": seconds, "error": error, "accounted": accounted, "detail": detail}


def _redis_row(result: SectionResult, p: Plan) -> dict[str, Any]:
    """Four worker processes, one RedisRateLimiter with qps="auto", true limit 50."""
    label = "4 processes, one RedisRateLimiter, qps='auto', true limit 50 (sliding)"
    if p.redis_seconds is None:
        _na(result, label, "not in --quick")
        return {}
    from . import redis_workers

    url = os.environ.get("KEYAPI_TEST_REDIS_URL")
    if url is None and redis_workers.find_redis_server() is None:
        _na(result, label, "no redis-server on PATH and KEYAPI_TEST_REDIS_URL unset")
        return {}
    why = redis_workers.auto_unavailable()
    if why:
        _na(result, label, why)
        return {}
    rate, seconds, warmup = 50, p.redis_seconds, 15.0
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(redis_workers.redis_server()).url
        run_ = redis_workers.run_workers(
            url, 4, rate, n_ids=int(rate * seconds * IDS_PER_REQUEST * 2), client_qps="auto",
            seconds=seconds,
        )
    accepted = run_["accepted"]
    ratio = sustained_rate(accepted, warmup) / rate
    requests = float(sum(shard["requests"] for shard in run_["shards"]))
    limited = float(sum(shard["rate_limited"] for shard in run_["shards"]))
    pct = 100 * limited / requests if requests else 0.0
    failed_rl = sum(
        1 for shard in run_["shards"] for reason in shard["failed"].values()
        if "RateLimitError" in reason
    )
    fatal = [shard["fatal"] for shard in run_["shards"] if shard["fatal"]]
    result.add(f"{label}: combined sustained after {warmup:g} s / 50", ratio, "x",
               target=">= 0.85x", ok=ratio >= 0.85, note=f"{seconds:g} s crawl")
    result.add(f"{label}: 429s", pct, "%", target="<= 3 %, none raised",
               ok=pct <= 3 and not fatal and failed_rl == 0,
               note=f"{limited:.0f} of {requests:.0f}; raised {len(fatal)}, RL ids {failed_rl}")
    return {"ratio": ratio, "pct_429": pct, "fatal": fatal, "failed_rl": failed_rl}


def run(quick: bool, complete: bool = False) -> SectionResult:
    """The gateways section: the matrix, the loaded core, auto, the storm, Redis."""
    result = SectionResult(TITLE)
    p = plan(quick, complete)
    auto_na = auto_unavailable()
    grid: list[str] = []
    proxied = [c for c in p.cells if c.gateway.kind != "fake"]
    faked = [c for c in p.cells if c.gateway.kind == "fake"]
    loaded = Cell(GATEWAYS["nginx"], 50, 0.05) if p.loaded else None
    t0 = time.monotonic()
    result.raw["cells"] = _proxied_cells(result, proxied, p, auto_na, grid, loaded)
    result.raw["cells"].update(_fake_cells(result, faked, p, auto_na, grid))
    result.raw["matrix_seconds"] = time.monotonic() - t0
    if p.auto_rates:
        result.raw["auto"] = _auto_rows(result, p, auto_na)
    else:
        _na(result, "qps='auto' 60 s runs and the pacing chart", "not in --quick")
    result.raw["storm"] = _storm_row(result, p)
    result.raw["redis"] = _redis_row(result, p)
    result.raw["grid"] = [GRID_HEADER, *grid]
    result.notes.append(
        f"each contender {p.run_seconds:g} s per cell on a fresh key, in turn (order reversed "
        f"every other cell); achieved/R = accepted arrivals at the origin per second after a "
        f"{p.warmup:g} s warm-up; 429s over the whole run; naive = aiohttp + "
        f"AsyncLimiter(R, 1), {NAIVE_WORKERS} workers, 429 retried at once; latency +- "
        f"{JITTER:.0%}"
    )
    print(f"\n== {TITLE}: grid (achieved/R sustained, 429s % of requests) ==")
    print("\n".join(result.raw["grid"]))
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.gateways [--quick]``: the section's tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gateways")
    parser.add_argument("--quick", action="store_true", help="smoke run, ~60 s")
    parser.add_argument("--complete", action="store_true",
                        help="every limiter at 50 and 400 ms (~13 minutes)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    print_table(run(args.quick, args.complete))
    print(f"{time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
