"""``FakeKeyAPI``: a local, faithful and harsher-than-life KeyAPI server."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import web

from keyapi_async.testing import faults as damage
from keyapi_async.testing.data import Entry, RankingQuery, SyntheticData
from keyapi_async.testing.faults import CHARGED_FAULTS, HTML_502, FaultPicker, Faults
from keyapi_async.testing.ratelimit import QPS_MODES, Limiter, QpsMode, make_limiter
from keyapi_async.testing.stats import RequestRecord, ServerStats, compute_stats
from keyapi_async.testing.validation import InvalidParams, parse_ranking, parse_video_ids

DETAIL_PATH = "/v1/tiktok/video/detail/analytics"
RANKING_PATH = "/v1/tiktok/video/ranking/analytics"
DEFAULT_API_KEY = "test-key"

_MESSAGES = {
    401: "apiKey is invalid",
    402: "apiKey quota is not enough",
    429: "qps limit exceeded",
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
# How long stop() lets in-flight answers finish before cancelling them; short,
# so a pending ``slow`` answer never holds a test's teardown up.
_SHUTDOWN_GRACE = 0.25


@dataclass(slots=True)
class _Answer:
    """What to send back, decided synchronously at arrival."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    extra_delay: float = 0.0
    reset: bool = False


def _request_id() -> str:
    return str(uuid.uuid4())


def _error_body(code: int, message: str) -> bytes:
    # Same key order as the spec's error examples, plus the requestId.
    return msgspec.json.encode(
        {"code": code, "data": None, "message": message, "requestId": _request_id()}
    )


def _ok_body(data: list[Any]) -> bytes:
    return msgspec.json.encode(
        {"code": 0, "message": "success", "data": data, "requestId": _request_id()}
    )


def _bearer(header: str | None) -> tuple[str | None, str | None]:
    """Return (key, problem) from an Authorization header; problem is None when usable."""
    if header is None or not header.strip():
        return None, "apiKey is null"
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None, "apiKey is invalid"
    token = token.strip()
    if not token:
        return None, "apiKey is null"
    return token, None


def _reset_connection(request: web.BaseRequest) -> None:
    """Drop the connection with a TCP RST and no HTTP answer at all."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns close() into a reset instead of an orderly FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FakeKeyAPI:
    """A local KeyAPI server for tests and benchmarks: real HTTP on a real socket.

    Implements both video endpoints with bearer auth, per-key QPS limits,
    credit quotas, deterministic synthetic data and fault injection.  Each
    API request is handled in this order, the first failing step answering:
    auth (401) -> QPS (429) -> parameters (400) -> quota (402) -> faults ->
    answer.  Every code-0 answer costs one credit, as do the damaged-but-
    code-0 faults (truncated, control_chars, real_arrays, slow).
    """

    def __init__(
        self,
        api_keys: Mapping[str, int | None] | Iterable[str] | None = None,
        *,
        qps: float | None = None,
        qps_mode: QpsMode = "sliding",
        count_rejected: bool = False,
        burst: int = 0,
        retry_after: float | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        arrival_jitter: float = 0.0,
        seed: int = 0,
        known_ratio: float = 0.9,
        ranking_length: int = 1000,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if qps_mode not in QPS_MODES:
            raise ValueError(f"qps_mode must be one of {QPS_MODES}, got {qps_mode!r}")
        if qps is not None and qps <= 0:
            raise ValueError("qps must be positive (or None for no limit)")
        if latency < 0 or jitter < 0 or arrival_jitter < 0:
            raise ValueError("latency, jitter and arrival_jitter must not be negative")
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
            raise ValueError(f"burst must be an int >= 0, got {burst!r}")
        if api_keys is None:
            api_keys = {DEFAULT_API_KEY: None}
        elif isinstance(api_keys, str):
            api_keys = [api_keys]
        if isinstance(api_keys, Mapping):
            self._credits: dict[str, int | None] = dict(api_keys)
        else:
            self._credits = dict.fromkeys(api_keys)
        self.qps = qps
        self.qps_mode: QpsMode = qps_mode
        self.count_rejected = count_rejected
        self.burst = burst
        self.retry_after = retry_after
        self.latency = latency
        self.jitter = jitter
        self.arrival_jitter = arrival_jitter
        self.seed = seed
        self._host = host
        self._port = port
        self._data = SyntheticData(seed, known_ratio, ranking_length)
        self._latency_rng = random.Random(f"latency:{seed}")
        self._arrival_rng = random.Random(f"arrival:{seed}")
        self._revoked: set[str] = set()
        self._revoked_by_fault: set[str] = set()
        self._limiters: dict[str, Limiter] = {}
        self._picker = FaultPicker(faults or Faults(), seed)
        self._successes: dict[str, int] = {}
        self._records: list[RequestRecord] = []
        self._number = 0
        self._inflight: dict[str | None, int] = {}
        self._max_inflight: dict[str | None, int] = {}
        self._inflight_total = 0
        self._max_inflight_total = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; after a ``stop()`` this comes back on the same port."""
        if self._runner is not None:
            raise RuntimeError("FakeKeyAPI is already running")
        self._loop = asyncio.get_running_loop()
        app = web.Application()
        for path in (DETAIL_PATH, RANKING_PATH):
            app.router.add_get(path, self._handle_api, allow_head=False)
        app.router.add_get("/_fake/stats", self._handle_stats, allow_head=False)
        app.router.add_get("/_fake/requests", self._handle_requests, allow_head=False)
        app.router.add_post("/_fake/reset", self._handle_reset)
        runner = web.AppRunner(
            app,
            access_log=None,  # logging every request would dominate benchmark profiles
            handler_cancellation=True,  # a client that gives up cancels its slow answer
            shutdown_timeout=_SHUTDOWN_GRACE,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        """Close the socket and every connection; state and request log are kept."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeKeyAPI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123`` (known once started)."""
        if self._port == 0:
            raise RuntimeError("FakeKeyAPI has not been started yet")
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound TCP port (0 before the first start with ``port=0``)."""
        return self._port

    # -- keys, faults ---------------------------------------------------------

    def set_credits(self, key: str, credits: int | None) -> None:
        """Set ``key``'s remaining credits (None = unlimited), adding the key if new."""
        self._credits[key] = credits

    def credits(self, key: str) -> int | None:
        """Remaining credits of ``key`` (None = unlimited); KeyError if unknown."""
        return self._credits[key]

    def revoke_key(self, key: str) -> None:
        """Make every further request with ``key`` fail with 401 "apiKey is invalid"."""
        self._revoked.add(key)

    @property
    def faults(self) -> Faults:
        """The active faults; assigning new ones restarts their random stream and counters."""
        return self._picker.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self._restart_faults(value)

    def _restart_faults(self, faults: Faults) -> None:
        self._picker = FaultPicker(faults, self.seed)
        self._successes.clear()

    # -- synthetic data -------------------------------------------------------

    def is_known(self, video_id: str) -> bool:
        """Whether the detail endpoint returns data for ``video_id``."""
        return self._data.is_known(video_id)

    def detail_record(self, video_id: str) -> dict[str, Any]:
        """The record the detail endpoint returns for a known id (KeyError if unknown)."""
        return dict(self._data.detail_entry(video_id).record)

    def ranking_records(
        self,
        date: str,
        region: str,
        video_rank_field: int | str,
        rank_type: int | str,
        product_category_id: str | int | None = None,
        created_by_ai: bool | str | None = None,
    ) -> list[dict[str, Any]]:
        """The full ranking list for these parameters, in rank order."""
        if isinstance(created_by_ai, bool):
            created_by_ai = "true" if created_by_ai else "false"
        query = RankingQuery(
            date,
            region,
            int(video_rank_field),
            int(rank_type),
            None if product_category_id is None else str(product_category_id),
            created_by_ai,
        )
        entries = self._data.ranking_entries(query, 0, self._data.ranking_length)
        return [dict(e.record) for e in entries]

    def make_ids(self, n: int, known: bool | None = None) -> list[str]:
        """``n`` distinct deterministic 19-digit ids; ``known`` filters by ``is_known``."""
        return self._data.make_ids(n, known)

    # -- observability --------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, in arrival order."""
        return list(self._records)

    def stats(self, key: str | None = None) -> ServerStats:
        """Statistics over the request log, optionally for one key only."""
        if key is None:
            return compute_stats(self._records, self._max_inflight_total)
        records = [r for r in self._records if r.key == key]
        return compute_stats(records, self._max_inflight.get(key, 0))

    def reset_counters(self) -> None:
        """Clear the log and statistics, and restart request numbering and fault state.

        Credits, revocations and rate-limiter state are left alone: they model
        the account, not the measurement.
        """
        self._records.clear()
        self._number = 0
        self._max_inflight = dict(self._inflight)
        self._max_inflight_total = self._inflight_total
        self._restart_faults(self.faults)

    # -- request handling -----------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        assert self._loop is not None
        if self.arrival_jitter:
            # The network's (or a proxy's) delay before the limiter sees the request: what
            # turns evenly paced starts into uneven arrivals.
            await asyncio.sleep(self._arrival_rng.uniform(0.0, self.arrival_jitter))
        params: dict[str, str] = {}
        for name, value in request.query.items():
            params.setdefault(name, value)  # the first value wins on repeats
        record = RequestRecord(
            time=self._loop.time(), wall_time=time.time(), path=request.path, params=params
        )
        self._records.append(record)
        self._number += 1
        answer = self._decide(request, record, self._number)
        self._enter(record.key)
        try:
            delay = self._latency() + answer.extra_delay
            if delay > 0:
                await asyncio.sleep(delay)
            if answer.reset:
                _reset_connection(request)
                return web.Response()  # never reaches the client: the transport is gone
            response = web.Response(
                body=answer.body,
                status=answer.status,
                content_type=answer.content_type,
                headers=answer.headers,
            )
            await response.prepare(request)
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionError):
            record.status = 0  # the client went away before getting its answer
            raise
        finally:
            self._leave(record.key)

    def _latency(self) -> float:
        if not self.latency and not self.jitter:
            return 0.0
        low, high = self.latency - self.jitter, self.latency + self.jitter
        return max(0.0, self._latency_rng.uniform(low, high))

    def _enter(self, key: str | None) -> None:
        self._inflight_total += 1
        self._max_inflight_total = max(self._max_inflight_total, self._inflight_total)
        current = self._inflight.get(key, 0) + 1
        self._inflight[key] = current
        self._max_inflight[key] = max(self._max_inflight.get(key, 0), current)

    def _leave(self, key: str | None) -> None:
        self._inflight_total -= 1
        self._inflight[key] -= 1

    def _decide(self, request: web.Request, record: RequestRecord, number: int) -> _Answer:
        """Run every check and pick the answer; synchronous, so checks and charges are atomic."""
        key, problem = _bearer(request.headers.get("Authorization"))
        record.key = key
        if problem is None and (key not in self._credits or key in self._revoked):
            problem = "apiKey is invalid"
        if problem is not None:
            if key in self._revoked_by_fault:
                record.fault = "revoke_after"
            return self._error(record, 401, problem)
        assert key is not None
        if self.qps is not None:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = make_limiter(self.qps_mode, self.qps, self.count_rejected, self.burst)
                self._limiters[key] = limiter
            if not limiter.allow(record.time):
                answer = self._error(record, 429, _MESSAGES[429])
                if self.retry_after is not None:
                    answer.headers["Retry-After"] = f"{self.retry_after:g}"
                return answer
        try:
            entries = self._entries(record)
        except InvalidParams as exc:
            return self._error(record, 400, str(exc))
        credits = self._credits[key]
        if credits is not None and credits <= 0:
            return self._error(record, 402, _MESSAGES[402])
        fault = self._picker.pick(number, record.path, record.params)
        record.fault = fault
        if fault is not None and fault not in CHARGED_FAULTS:
            return self._fault_answer(record, fault)
        self._charge(record, key)
        answer = _Answer(200)
        if fault == "control_chars":
            records = damage.with_control_chars([e.record for e in entries])
            answer.body = damage.inject_control_chars(_ok_body(records))
        elif fault == "real_arrays":
            answer.body = _ok_body(damage.with_real_arrays([e.record for e in entries]))
        else:
            answer.body = _ok_body([e.raw for e in entries])
            if fault == "truncated":
                answer.body = damage.truncate(answer.body)
            elif fault == "slow":
                answer.extra_delay = self.faults.slow_seconds
        return answer

    def _entries(self, record: RequestRecord) -> list[Entry]:
        """Validate the parameters and fetch the records the answer will carry."""
        if record.path == DETAIL_PATH:
            return self._data.detail_entries(parse_video_ids(record.params))
        query, page_num, page_size = parse_ranking(record.params)
        start = (page_num - 1) * page_size
        return self._data.ranking_entries(query, start, start + page_size)

    def _charge(self, record: RequestRecord, key: str) -> None:
        record.status, record.code, record.credit = 200, 0, True
        credits = self._credits[key]
        if credits is not None:
            self._credits[key] = credits - 1
        revoke_after = self.faults.revoke_after
        if revoke_after is not None:
            self._successes[key] = successes = self._successes.get(key, 0) + 1
            if successes >= revoke_after:
                self._revoked.add(key)
                self._revoked_by_fault.add(key)

    def _error(
        self, record: RequestRecord, status: int, message: str, code: int | None = None
    ) -> _Answer:
        """A JSON error answer; the body code is the HTTP status unless given."""
        body_code = status if code is None else code
        record.status, record.code = status, body_code
        return _Answer(status, _error_body(body_code, message))

    def _fault_answer(self, record: RequestRecord, fault: str) -> _Answer:
        faults = self.faults
        if fault == "reset":
            return _Answer(0, reset=True)
        if fault == "html_502":
            record.status = 502
            return _Answer(502, HTML_502, content_type="text/html")
        if fault == "body_429":
            return self._error(record, 200, _MESSAGES[429], code=429)
        if fault == "body_500":
            return self._error(record, 200, _MESSAGES[500], code=500)
        status = faults.fail_first_status if fault == "fail_first" else faults.status_5xx
        return self._error(record, status, _MESSAGES.get(status, _MESSAGES[500]))

    # -- admin routes (not API requests: never logged or counted) -------------

    async def _handle_stats(self, request: web.Request) -> web.Response:
        stats = self.stats(request.query.get("key"))
        return web.Response(body=msgspec.json.encode(stats), content_type="application/json")

    async def _handle_requests(self, request: web.Request) -> web.Response:
        body = msgspec.json.encode(self._records)
        return web.Response(body=body, content_type="application/json")

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset_counters()
        return web.Response(body=b'{"ok":true}', content_type="application/json")
