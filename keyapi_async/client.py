"""KeyAPIClient: the async session manager, and the one request pipeline behind it.

Every request takes the same path, each stage in the module named after it::

    validation -> batching -> fanout (window of tasks)
      -> retrying( concurrency slot -> limiting permit -> transport -> decoding )

Lookups of single videos (``video_detail``, ``video_details``) first ask the cache, if the
client has one, then the coalescer, which merges concurrent calls into shared batches fed
to the same pipeline; iterators and crawls take the pipeline directly. Under a credit
budget each attempt reserves its credit just before its permit (``budget``).

A permit is taken just before the request goes on the wire, and every retry takes a new
one, so the rate limiter sees every start. A 429 without Retry-After is a congestion
signal, not a failure: the limiter slows down and the request waits for a fresh permit,
for up to ``rate_limit_patience`` seconds without any success. A fatal error (401, 402,
403, a redirect, a bare 404, an unreachable API, patience running out) ends the whole
call: requests already on the wire finish (their answers are paid for), no new one starts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import msgspec
from backoff.types import Details

from ._logs import setup_logging
from .adaptive import Patience
from .batching import MAX_IDS_PER_REQUEST, IdSource, id_batches, list_batches, unique_ids
from .budget import Credit, CreditBudget, charge_of
from .caching import DETAILS, RANKING_PAGES, RAW_ANSWERS, Cache, CacheKind, query_key
from .coalescing import DEFAULT_WINDOW, Coalescer, Fetched
from .concurrency import InFlightLimit
from .decoding import (
    DETAIL_DECODER,
    RANKING_DECODER,
    Decoded,
    Envelope,
    RawResponse,
    RepairLog,
    decode_raw,
    decode_response,
)
from .errors import ConfigurationError, InvalidParameterError, KeyAPIError, RateLimitError
from .events import (
    AttemptFinished,
    AttemptStarted,
    CacheHit,
    Event,
    EventHandler,
    PacingChanged,
    RateLimited,
    Retrying,
    make_emitter,
    url_without_credentials,
)
from .fanout import TaskWindow
from .limiting import LocalRateLimiter, RateLimiter
from .models import RankedVideo, VideoDetail
from .reachability import Reachability
from .redaction import Redactor, clean_text
from .retrying import RetryPolicy
from .salvage import failed_ids
from .transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    HttpResponse,
    Transport,
    check_api_key,
    check_base_url,
    closed_error,
    resolve_proxy,
)
from .validation import (
    MAX_PAGE_NUM,
    RankingQuery,
    api_path,
    check_max_pages,
    check_page,
    query_params,
    ranking_query,
)
from .validation import video_id as _video_id

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_QPS",
    "DEFAULT_RATE_LIMIT_PATIENCE",
    "DEFAULT_TIMEOUT",
    "ClientStats",
    "DetailBatch",
    "KeyAPIClient",
    "RankingPage",
]

logger = logging.getLogger("keyapi_async")

#: Where the API lives unless ``base_url`` or ``KEYAPI_BASE_URL`` says otherwise.
DEFAULT_BASE_URL: Final = "https://api.keyapi.ai"
#: Request starts per second. Conservative: raise it to your key's real limit.
DEFAULT_QPS: Final = 5.0
#: Retries after the first attempt.
DEFAULT_MAX_RETRIES: Final = 4
#: Seconds for one attempt, connect to last byte.
DEFAULT_TIMEOUT: Final = 30.0
#: Seconds of nothing but 429s (no success) after which a call gives up.
DEFAULT_RATE_LIMIT_PATIENCE: Final = 120.0
#: Longest timeout accepted: a day (a larger one overflows timers at the first request).
_MAX_TIMEOUT: Final = 86_400.0

DETAIL_PATH: Final = "/v1/tiktok/video/detail/analytics"
RANKING_PATH: Final = "/v1/tiktok/video/ranking/analytics"

#: A pacing rate change smaller than this fraction is not reported (the rate moves
#: continuously while it recovers from a 429).
_PACING_STEP: Final = 0.05

T = TypeVar("T")
#: Turns one HTTP answer into records or a typed error (one per endpoint, bound once).
Decode = Callable[[HttpResponse], Decoded[T]]


@dataclass(frozen=True)
class DetailBatch:
    """The outcome of one detail request (up to 10 ids): the unit of accounting.

    Exactly one of these holds: ``error`` is None and every id is in ``videos``,
    ``missing`` or ``failed``; ``error`` is set (the batch failed after its retries, or hit
    a fatal error); or ``sent`` is False (the call was aborted before this batch went out).
    ``failed`` maps the ids whose record in this (paid, complete) answer could not be
    decoded at all to the reason; such an answer is never retried.
    """

    ids: tuple[str, ...]
    videos: list[VideoDetail] = field(default_factory=list)
    missing: tuple[str, ...] = ()
    error: KeyAPIError | None = None
    sent: bool = True
    attempts: int = 0
    rate_limited: int = 0
    request_id: str | None = None
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RankingPage:
    """One page of a ranking list, with its page number.

    ``failed`` maps the position (0-based, in the answer) of each item that could not be
    decoded to the reason; ``items`` holds the others, in order. The page held
    ``len(items) + len(failed)`` items.
    """

    page_num: int
    items: list[RankedVideo]
    request_id: str | None = None
    attempts: int = 1
    failed: dict[int, str] = field(default_factory=dict)


#: What the fan-out takes: ids to request, or a batch answered already (from the cache).
_Batch = list[str] | DetailBatch


class _Aborted(Exception):
    """The call was halted before this request went out (internal)."""


class _CallScope:
    """State shared by the requests of one call: what halts it (a fatal error, a stop)."""

    __slots__ = ("fatal", "stop")

    def __init__(self, stop: asyncio.Event | None = None) -> None:
        self.fatal: KeyAPIError | None = None
        self.stop = stop

    @property
    def halted(self) -> bool:
        """No new request may start."""
        return self.fatal is not None or (self.stop is not None and self.stop.is_set())


class _Request:
    """Bookkeeping of one logical request across its attempts."""

    __slots__ = (
        "answered", "attempts", "on_send", "on_wire", "rate_limited", "replay", "scope", "waiting",
    )

    def __init__(self, scope: _CallScope) -> None:
        self.scope = scope
        self.attempts = 0
        self.rate_limited = 0
        self.on_wire = False
        #: A paid answer came back and decoded: what follows (storing it in a cache, say)
        #: must not be cancelled, or the answer would be lost and paid for again.
        self.answered = False
        #: Inside an attempt, before the wire: waiting for a slot, a credit or a permit.
        self.waiting = False
        #: Called when the request stops waiting (it went on the wire, or the attempt ended).
        self.on_send: Callable[[], None] | None = None
        #: The first attempt's failure, handed to the retry loop (see KeyAPIClient._request).
        self.replay: KeyAPIError | None = None


def _halt(requests: dict[asyncio.Task[T], _Request]) -> None:
    """Cancel the tasks whose request is not on the wire: they wait for a slot, a permit or a
    retry, and must not start. Requests on the wire, or answered and being stored, finish:
    their answers are paid for."""
    for task, request in requests.items():
        if not (request.on_wire or request.answered) and not task.done():
            task.cancel()


@dataclass
class ClientStats:
    """Counters over the client's life: attempts sent, retries, 429s, errors by type.

    ``retries`` counts backoff retries (5xx, network errors, 429 with Retry-After);
    a 429 without Retry-After is counted in ``rate_limited`` only. ``learned_qps`` is the
    pacing rate at the last 429 (where the server started refusing), None before one.
    ``coerced_values`` counts, by ``Model.field``, the values of paid answers that did not
    fit their type and were read leniently or set to None (see the data model page);
    ``undecodable_records`` counts the records that could not be decoded at all.

    Credits: ``credits_spent`` counts the attempts whose answer cost a credit (code 0),
    ``credits_unknown`` those whose charge cannot be known (no answer, a damaged one, a
    5xx). ``cache_hits`` counts the ids and pages served from the cache;
    ``credits_saved`` the requests the cache and coalescing spared: what each lookup
    would have sent on its own (``ceil(ids / 10)``, a page, an answer) minus the requests
    sent for it. ``coalesced`` counts the id lookups that joined a request another call
    had already opened for the same id.
    """

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    coerced_values: dict[str, int] = field(default_factory=dict)
    undecodable_records: int = 0
    learned_qps: float | None = None
    #: attempts cancelled while on the wire (a crawl stopped hard): the server may have
    #: answered them, and charged a credit, after the client stopped listening
    cancelled_on_wire: int = 0
    credits_spent: int = 0
    credits_unknown: int = 0
    cache_hits: int = 0
    credits_saved: int = 0
    coalesced: int = 0


class KeyAPIClient:
    """Async client for KeyAPI's TikTok video analytics.

    Use as ``async with KeyAPIClient() as client:`` (or call :meth:`aclose`). The key comes
    from ``api_key`` or the ``KEYAPI_API_KEY`` environment variable, the URL from ``base_url``,
    ``KEYAPI_BASE_URL`` or the production default.

    Args:
        api_key: Bearer key; never logged, shown or stored outside the Authorization header.
        base_url: API root, ``https://api.keyapi.ai`` by default.
        qps: Hard budget of request starts per second, retries included (default 5); a
            429 lowers the pacing rate below it for a while. ``"auto"`` discovers the
            key's limit: slow start from 5, then it settles just below the first 429s.
        max_qps: The ceiling of ``qps="auto"`` (default 1000).
        max_concurrency: Cap on requests in flight; None derives it from the current
            rate and latency.
        max_retries: Retries after the first attempt for retryable errors; None takes
            ``retry_policy``'s count (default 4).
        timeout: Seconds per attempt (default 30).
        rate_limiter: Another :class:`RateLimiter` (one shared across processes, say);
            when given, ``qps`` is taken from it.
        retry_policy: Backoff details; an explicit ``max_retries`` overrides its count.
        rate_limit_patience: Seconds of 429s without a single success after which the
            call gives up with a fatal :class:`RateLimitError` (default 120).
        max_response_bytes: Largest answer accepted, as sent and once decompressed
            (default 4 MiB; a 10-record answer is about 10 KB). A larger one raises
            :class:`ResponseTooLargeError` after reading only that much.
        proxy: HTTP(S) proxy URL, ``http://[user:password@]host:port``. By default the
            ``HTTPS_PROXY`` / ``HTTP_PROXY`` environment variables are honoured (with
            ``NO_PROXY``), except for a loopback ``base_url``. Credentials never appear
            in a repr, log or error.
        coalesce: Merge concurrent :meth:`video_detail` / :meth:`video_details` calls
            into shared requests of up to 10 ids (default on; see the apps guide).
        coalesce_window: Seconds an id waits for company before its request leaves
            anyway (default 5 ms); a full batch of 10 leaves at once.
        cache: A :class:`Cache` (``MemoryCache``, ``RedisCache``) serving video details,
            ids unknown to the API, ranking pages and :meth:`request` answers while they
            are fresh, at no permit and no credit. Off unless given; the client never
            closes it. Iterators and crawls bypass it unless asked (``use_cache=True``).
        max_credits: No request starts that could take this client past this many
            credits, retries included: the call stops with the fatal
            :class:`CreditBudgetExceededError`. None (the default): no budget.
        on_event: An event handler, or a list of them, called with every
            :class:`Event` (attempts, retries, 429s, pacing changes, cache hits,
            coalesced batches); e.g. :class:`OpenTelemetryHook`. No event holds the key.

    ``KEYAPI_LOG=debug`` (or ``info``) in the environment turns the SDK's logging on.

    Attempts that get no answer at all, one after another (10 in a row, and, once the API
    has answered, for longer than a request's own retries can wait), end the call with
    :class:`APIUnreachableError` instead of retrying every id.

    A client belongs to one event loop at a time: using it from another thread's loop is
    refused (:class:`ConfigurationError`), while a new loop after the previous one closed
    (two successive ``asyncio.run`` calls) is fine: the session and the default rate
    limiter are rebuilt in it (a ``rate_limiter`` you pass must itself suit the new loop).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        qps: float | Literal["auto"] = DEFAULT_QPS,
        max_qps: float | None = None,
        max_concurrency: int | None = None,
        max_retries: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        rate_limiter: RateLimiter | None = None,
        retry_policy: RetryPolicy | None = None,
        rate_limit_patience: float = DEFAULT_RATE_LIMIT_PATIENCE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: str | None = None,
        coalesce: bool = True,
        coalesce_window: float = DEFAULT_WINDOW,
        cache: Cache | None = None,
        max_credits: int | None = None,
        on_event: EventHandler | Iterable[EventHandler] | None = None,
    ) -> None:
        setup_logging()
        key = check_api_key(api_key if api_key is not None else os.environ.get("KEYAPI_API_KEY"))
        policy = retry_policy or RetryPolicy()
        if max_retries is None:
            max_retries = policy.max_retries
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            or not (math.isfinite(timeout) and 0 < timeout <= _MAX_TIMEOUT)
        ):
            raise ConfigurationError(
                f"timeout must be a number of seconds in (0, {_MAX_TIMEOUT:g}], got {timeout!r}"
            )
        if (
            isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1
        ):
            raise ConfigurationError(
                f"max_response_bytes must be a positive int, got {max_response_bytes!r}"
            )
        try:
            self._limiter: RateLimiter = rate_limiter or LocalRateLimiter(qps, max_qps=max_qps)
            self._inflight = InFlightLimit(lambda: self._limiter.qps, max_concurrency)
            self._patience = Patience(rate_limit_patience)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._owns_limiter = rate_limiter is None
        self._max_concurrency = max_concurrency
        url = check_base_url(base_url or os.environ.get("KEYAPI_BASE_URL") or DEFAULT_BASE_URL)
        # Patience before giving up on an API that never answers: the longest a single
        # request's retries can wait (the backoff ceilings), see reachability.py.
        patience = sum(min(policy.max_delay, policy.base_delay * 2**n) for n in range(max_retries))
        self._transport = Transport(
            url, key, float(timeout), max_response_bytes=max_response_bytes,
            proxy=resolve_proxy(url, proxy), reachability=Reachability(patience=patience),
        )
        self.retry_policy = RetryPolicy(
            max_retries=max_retries,
            base_delay=policy.base_delay,
            max_delay=policy.max_delay,
            max_retry_after=policy.max_retry_after,
        )
        self._retry = self.retry_policy.wrap(self._retry_attempt, self._before_retry)
        self.timeout = float(timeout)
        self.stats = ClientStats()
        self._repairs = RepairLog(self.stats.coerced_values)
        # Optional in the RateLimiter protocol: a limiter without it just does not adapt.
        self._on_throttle = getattr(self._limiter, "on_throttle", None)
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        # One decode function per endpoint, bound once.
        self._decode_detail: Decode[VideoDetail] = partial(
            _decode_typed, DETAIL_DECODER, self._repairs
        )
        self._decode_ranking: Decode[RankedVideo] = partial(
            _decode_typed, RANKING_DECODER, self._repairs
        )
        # Only to refuse the key in a request()'s path or parameters, where it would
        # reach URLs, events and the server's logs.
        self._key_forms = Redactor([key.reveal()])
        self._apps_options(coalesce, coalesce_window, cache, max_credits, on_event)

    def _apps_options(
        self, coalesce: object, window: float, cache: object, max_credits: int | None,
        on_event: EventHandler | Iterable[EventHandler] | None,
    ) -> None:
        """The app features: events, budget, cache, coalescer (each None when off)."""
        try:
            self._emit: Callable[[Event], None] | None = make_emitter(on_event)
        except TypeError as exc:
            raise ConfigurationError(str(exc)) from None
        self._attempt_ids = itertools.count(1)
        self._paced: float | None = None  # the pacing rate last reported
        self._budget = None if max_credits is None else CreditBudget(max_credits)
        if cache is not None and not isinstance(cache, Cache):
            raise ConfigurationError(
                f"cache must be a keyapi_async Cache (MemoryCache, RedisCache), got "
                f"{type(cache).__name__}"
            )
        self._cache: Cache | None = cache
        if not isinstance(coalesce, bool):
            raise ConfigurationError(f"coalesce must be True or False, got {coalesce!r}")
        self._coalesce_window = window
        # The scope of coalesced requests: shared by every lookup until a fatal error,
        # after which lookups start afresh (a topped-up account works again).
        self._app_scope = _CallScope()
        self._coalesced: dict[asyncio.Task[Any], _Request] = {}
        self._coalescer: Coalescer[VideoDetail] | None = None
        if coalesce:
            try:
                self._coalescer = self._new_coalescer()
            except ValueError as exc:
                raise ConfigurationError(f"coalesce_{exc}") from None

    def _new_coalescer(self) -> Coalescer[VideoDetail]:
        return Coalescer(
            self._coalesced_fetch, window=self._coalesce_window,
            max_in_flight=lambda: self._inflight.limit, partial_in_flight=self._coalesced_cap,
            emit=self._emit, cancel_abandoned=self._may_cancel,
        )

    def _coalesced_cap(self) -> int:
        """The cap for a batch that is not full: it leaves only when no other waits for its
        permit (those on the wire or between retries do not count). Ids keep gathering
        meanwhile, so while the limiter is the bottleneck batches leave full instead of
        queueing half-empty for permits; a batch not yet started counts as waiting."""
        moving = sum(not request.waiting for request in self._coalesced.values())
        return min(self._inflight.limit, moving + 1)

    def _may_cancel(self, task: asyncio.Task[Any]) -> bool:
        """Whether a shared request every caller left may be cancelled: yes, unless it is
        on the wire and a cache will keep its answer (paid for either way)."""
        request = self._coalesced.get(task)
        return (
            self._cache is None or request is None
            or not (request.on_wire or request.answered)
        )

    # -- lifecycle -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        return self._transport.base_url

    @property
    def qps(self) -> float:
        """The current pacing rate in request starts per second (it adapts to 429s)."""
        return self._limiter.qps

    @property
    def rate_limit_patience(self) -> float:
        """Seconds of nothing but 429s after which a call gives up."""
        return self._patience.seconds

    async def _seed_rate(self, learned_qps: float) -> None:
        """Start a ``qps="auto"`` rate from the limit an earlier run learned (a resumed
        crawl); no effect on a fixed qps or once this client has met a 429."""
        seed = getattr(self._limiter, "seed", None)
        if seed is not None and await seed(learned_qps):
            self.stats.learned_qps = getattr(self._limiter, "learned_qps", None)

    @property
    def max_credits(self) -> int | None:
        """The credit budget (None: no budget)."""
        return None if self._budget is None else self._budget.max_credits

    @property
    def credits_remaining(self) -> int | None:
        """Credits of the budget not yet spent or reserved (None: no budget)."""
        return None if self._budget is None else self._budget.remaining

    @property
    def cache(self) -> Cache | None:
        """The cache the client was given, or None."""
        return self._cache

    @property
    def max_concurrency(self) -> int:
        """The current cap on requests in flight (fixed, or derived from latency)."""
        return self._inflight.limit

    @property
    def max_response_bytes(self) -> int:
        """Largest answer accepted, in bytes, as sent and once decompressed."""
        return self._transport.max_response_bytes

    @property
    def proxy(self) -> str | None:
        """The proxy requests go through (without credentials), or None."""
        return None if self._transport.proxy is None else self._transport.proxy.url

    async def __aenter__(self) -> KeyAPIClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session. The client cannot be used afterwards: requests still
        waiting for a slot or a permit end the call, and no new session is opened.
        Lookups waiting for a shared request fail with the closed-client error. A cache
        passed in is left open: it belongs to the caller."""
        self._closed = True
        coalescer = self._coalescer
        if coalescer is not None:
            try:
                same_loop = asyncio.get_running_loop() is self._loop
            except RuntimeError:
                same_loop = False
            # Its tasks and futures live in the loop that used it; a closed loop took them.
            if same_loop:
                await coalescer.aclose(closed_error())
        await self._transport.close()

    def _bind_loop(self) -> None:
        """Tie the client to the running loop; rebuild loop-bound state if the loop it was
        used in has closed since, refuse if that loop is still open (another thread)."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:  # the usual case: one identity test
            return
        with self._loop_lock:  # two threads binding at once: one wins, the other is refused
            previous = self._loop
            if previous is loop:
                return
            if previous is not None:
                if not previous.is_closed():
                    error = ConfigurationError(
                        "this KeyAPIClient is in use by another event loop (another thread, "
                        "or a loop still open); create one client per thread or event loop"
                    )
                    error.fatal = True
                    raise error
                # A new loop after the old one closed (successive asyncio.run calls): the
                # session went with the old loop; locks and waiters are bound to it.
                self._transport.forget_session()
                if self._owns_limiter:
                    # A fresh schedule, the same adaptive rate (a pure object: no loop).
                    old = self._limiter
                    assert isinstance(old, LocalRateLimiter)
                    self._limiter = LocalRateLimiter(
                        "auto" if old.auto else old.max_qps, max_qps=old.max_qps if old.auto
                        else None, headroom=old.headroom, control=old.control,
                    )
                    self._on_throttle = self._limiter.on_throttle
                self._inflight = InFlightLimit(lambda: self._limiter.qps, self._max_concurrency)
                if self._coalescer is not None:  # its futures belonged to the old loop
                    self._coalescer = self._new_coalescer()
                    self._coalesced.clear()
            self._loop = loop

    def __del__(self, _warn: Any = warnings.warn) -> None:
        # Only a session that was opened holds sockets; one never used needs no closing.
        if getattr(self, "_closed", True) is False and self._transport.is_open:
            _warn(
                f"unclosed {self!r}: use 'async with KeyAPIClient()' or 'await client.aclose()'",
                ResourceWarning,
                source=self,
            )

    def __repr__(self) -> str:
        if not hasattr(self, "_transport"):  # __init__ refused its arguments
            return "KeyAPIClient(<not configured>)"
        proxy = "" if self.proxy is None else f", proxy={self.proxy!r}"
        return (
            f"KeyAPIClient(base_url={self.base_url!r}, qps={self.qps:.4g}, "
            f"max_concurrency={self._inflight.limit}{proxy}, api_key='***')"
        )

    # -- the pipeline ----------------------------------------------------------------

    async def _attempt(
        self, path: str, params: dict[str, str], decode: Decode[T], request: _Request,
    ) -> Decoded[T]:
        """One attempt: slot, credit, permit, send, decode (retries: see :meth:`_request`).

        A 429 without Retry-After goes back for a fresh permit here (see
        :meth:`_congested`): it is not a failure, so the retry loop never sees it.
        """
        if self._closed:
            raise closed_error()
        self._bind_loop()
        loop = asyncio.get_running_loop()
        while True:
            request.waiting = True
            inflight = self._inflight  # released on the object it was taken from
            await inflight.acquire()
            latency: float | None = None
            credit: Credit | None = None
            sent = False
            failure: BaseException | None = None
            status: int | None = None
            answer_id: str | None = None
            attempt_id, wall = 0, 0.0
            try:
                if self._budget is not None:
                    # Before the permit: a permit is a start the limiter has counted, so
                    # nothing may hold a request back once it has one.
                    credit = await self._budget.reserve()
                await self._limiter.acquire()
                if request.scope.halted:
                    raise _Aborted
                if self._closed:  # closed while this attempt waited
                    raise closed_error()
                started = loop.time()
                request.attempts += 1
                self.stats.requests += 1
                request.on_wire = sent = True
                request.waiting = False
                if request.on_send is not None:
                    request.on_send()
                if self._emit is not None:
                    attempt_id, wall = self._attempt_started(path, params, request.attempts)
                try:
                    response = await self._transport.get(path, params)
                except BaseException as exc:
                    failure = exc  # no answer (or cancelled): the charge is unknown
                    raise
                request.on_wire = False
                latency = loop.time() - started
                status = response.status
                try:
                    decoded = decode(response)
                except KeyAPIError as exc:
                    failure = exc
                    name = type(exc).__name__
                    self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
                    if not isinstance(exc, RateLimitError):
                        raise
                    request.rate_limited += 1
                    self.stats.rate_limited += 1
                    if self._emit is not None:
                        self._emit(RateLimited(
                            endpoint=path, attempt=request.attempts, retry_after=exc.retry_after
                        ))
                    # A near-instant refusal says nothing about how long answers take.
                    latency = None
                    if exc.retry_after is not None:
                        raise  # the retry loop waits exactly that long
                    throttled = exc
                else:
                    request.answered = True
                    self._patience.success()
                    self.stats.undecodable_records += len(decoded.failed)
                    if decoded.request_id is not None:  # server text: one line, bounded
                        decoded.request_id = answer_id = clean_text(decoded.request_id, 128)
                    return decoded
            except asyncio.CancelledError:
                if request.on_wire:
                    self.stats.cancelled_on_wire += 1
                raise
            finally:
                request.on_wire = False
                if request.waiting:
                    request.waiting = False
                    if request.on_send is not None:
                        request.on_send()
                inflight.release(latency)
                if sent:
                    self._attempt_ended(
                        path, params, request.attempts, credit, failure, status, answer_id,
                        loop.time() - started, wall, attempt_id,
                    )
                elif credit is not None:
                    credit.release()  # never sent: it cost nothing
            await self._congested(throttled, started, request)

    def _attempt_started(
        self, path: str, params: dict[str, str], attempt: int
    ) -> tuple[int, float]:
        """Report an attempt going on the wire (and the pacing rate, when it moved)."""
        assert self._emit is not None
        rate = self._limiter.qps
        last = self._paced
        if last is None or abs(rate - last) > _PACING_STEP * last:
            self._paced = rate
            self._emit(PacingChanged(
                qps=rate, previous=last, reason="start" if last is None else "adapted"
            ))
        attempt_id = next(self._attempt_ids)
        self._emit(AttemptStarted(
            endpoint=path, url=url_without_credentials(self.base_url, path, params),
            attempt=attempt, attempt_id=attempt_id,
        ))
        return attempt_id, time.time()

    def _attempt_ended(
        self, path: str, params: dict[str, str], attempt: int, credit: Credit | None,
        failure: BaseException | None, status: int | None, request_id: str | None,
        latency: float, wall: float, attempt_id: int,
    ) -> None:
        """Account for an attempt that went on the wire: its credit, and its event."""
        charged = charge_of(failure)
        if charged:
            self.stats.credits_spent += 1
        elif charged is None:
            self.stats.credits_unknown += 1
        if credit is not None:
            credit.settle(charged)
        if self._emit is None:
            return
        code: int | None = 0
        if isinstance(failure, KeyAPIError):
            status = failure.status if failure.status is not None else status
            code, request_id = failure.code, failure.request_id
        elif failure is not None:
            code = None
        self._emit(AttemptFinished(
            endpoint=path, url=url_without_credentials(self.base_url, path, params),
            attempt=attempt, attempt_id=attempt_id, status=status, code=code,
            error=None if failure is None else type(failure).__name__, latency=latency,
            started_at=wall, charged=charged, request_id=request_id,
        ))

    async def _congested(self, exc: RateLimitError, started: float, request: _Request) -> None:
        """A 429 without Retry-After: tell the limiter (it slows down, once per congestion
        event), then let the request queue for a fresh permit, unless the call is halted
        or nothing has succeeded for ``rate_limit_patience`` seconds (a fatal error)."""
        if self._on_throttle is not None:
            before = self._limiter.qps
            await self._on_throttle(started)
            self.stats.learned_qps = getattr(self._limiter, "learned_qps", None)
            if self._emit is not None:
                after = self._limiter.qps
                if after != before:
                    self._paced = after
                    self._emit(PacingChanged(qps=after, previous=before, reason="throttled"))
        if request.scope.halted:
            raise _Aborted
        if self._patience.throttled(asyncio.get_running_loop().time()):
            raise self._patience_error(exc) from exc
        logger.debug("429 without Retry-After: pacing at %.2f qps now", self._limiter.qps)

    def _patience_error(self, last: RateLimitError) -> RateLimitError:
        seconds = self._patience.seconds
        error = RateLimitError(
            f"gave up after {seconds:g} s of 429 answers without a single success "
            f"(rate_limit_patience={seconds:g})",
            status=last.status, code=last.code, request_id=last.request_id,
        )
        # Fatal like a 401: waiting longer is the user's call, not the retry loop's.
        error.fatal, error.retryable = True, False
        error.hint = (
            "the key's limit is taken by another client, or the API refuses it; resume "
            "later, or raise rate_limit_patience= to wait longer"
        )
        return error

    async def _before_retry(self, details: Details) -> None:
        exc = details.get("exception")
        wait = float(details.get("wait", 0.0))
        self.stats.retries += 1
        if isinstance(exc, RateLimitError):
            # A 429 with Retry-After (one without never gets here): the server said how
            # long the key's budget is closed, to every task, so no task starts meanwhile.
            await self._limiter.penalize(wait)
        logger.info(
            "retrying %s in %.2fs after %s (attempt %d of %d)",
            details["args"][0], wait, type(exc).__name__, details["tries"],
            self.retry_policy.max_retries + 1,
        )
        if self._emit is not None:
            self._emit(Retrying(
                endpoint=details["args"][0], attempt=details["tries"], wait=wait,
                error=type(exc).__name__,
            ))

    async def _retry_attempt(
        self, path: str, params: dict[str, str], decode: Decode[T], request: _Request,
    ) -> Decoded[T]:
        """An attempt inside the retry loop; its first call replays the failure of the
        attempt made outside it, so the loop counts that attempt and waits before the next."""
        if request.replay is not None:
            failure, request.replay = request.replay, None
            raise failure
        return await self._attempt(path, params, decode, request)

    async def _request(
        self, path: str, params: dict[str, str], decode: Decode[T], request: _Request,
    ) -> Decoded[T]:
        try:
            try:
                # Most requests succeed at once: the first attempt skips the retry machinery,
                # which only a retryable failure enters.
                return await self._attempt(path, params, decode, request)
            except KeyAPIError as exc:
                if not self.retry_policy.max_retries or self.retry_policy.should_give_up(exc):
                    raise
                request.replay = exc
            result: Decoded[T] = await self._retry(path, params, decode, request)
        except KeyAPIError as exc:
            if exc.fatal and request.scope.fatal is None:
                request.scope.fatal = exc
            raise
        return result

    # -- video details ---------------------------------------------------------------

    async def _detail_batch(
        self, ids: list[str], request: _Request, store: bool = False
    ) -> DetailBatch:
        """One detail request, as a DetailBatch; ``store``: keep the answer in the cache."""
        try:
            decoded = await self._request(
                DETAIL_PATH, {"video_ids": ",".join(ids)}, self._decode_detail, request
            )
        except _Aborted:
            return DetailBatch(tuple(ids), sent=False, attempts=request.attempts)
        except KeyAPIError as exc:
            if exc.fatal and not request.attempts:
                # Refused before it was ever sent (credit budget, closed client): these
                # ids were not attempted; the call raises the error.
                return DetailBatch(tuple(ids), sent=False)
            return DetailBatch(
                tuple(ids), error=exc, attempts=request.attempts,
                rate_limited=request.rate_limited, request_id=exc.request_id,
            )
        videos, request_id = decoded.records, decoded.request_id
        found = {v.video_id for v in videos}
        failed = failed_ids(ids, found, decoded.failed) if decoded.failed else {}
        missing = tuple(i for i in ids if i not in found and i not in failed)
        if not len(videos) == len(found) == len(ids) - len(missing) - len(failed):
            # A repeated record, one not asked for, or one without an id: every path that
            # yields records starts here, so each yields only ids asked, once each.
            asked = set(ids)
            first: dict[str, VideoDetail] = {}
            for video in videos:  # the slow path only: a clean answer skips it
                if video.video_id in asked:
                    first.setdefault(video.video_id, video)
            videos = list(first.values())
        if missing:
            logger.debug("ids unknown to the API (request id %s): %s", request_id, missing)
        if store and self._cache is not None:
            # Records, and ids the API did not know (negative entries); never the ids
            # whose record could not be decoded: asking again may succeed.
            entries: dict[str, VideoDetail | None] = dict.fromkeys(missing)
            entries.update((v.video_id, v) for v in videos if v.video_id is not None)
            await self._cache.set_many(DETAILS, entries)
        return DetailBatch(
            tuple(ids), videos, missing, attempts=request.attempts,
            rate_limited=request.rate_limited, request_id=request_id, failed=failed,
        )

    def iter_detail_batches(
        self, ids: IdSource, *, dedupe: bool = True, stop: asyncio.Event | None = None,
        use_cache: bool = False,
    ) -> AsyncGenerator[DetailBatch, None]:
        """Yield one :class:`DetailBatch` per request, as requests complete.

        The accounting view of :meth:`iter_video_details`: a batch that fails after its
        retries is yielded with its ``error`` and the call goes on. A 401 or 402 halts the
        call: no new request starts, batches on the wire finish and are yielded, the others
        are yielded with ``sent=False``, then the error is raised. Setting ``stop`` halts
        the call the same way and ends the iteration normally (no more ids are pulled).

        The cache is bypassed unless ``use_cache`` (and the client has one): then ids it
        holds come back first in batches with ``attempts == 0`` (no request, no credit),
        the others are packed 10 a request, and every answer is stored in it.
        """
        batches = id_batches(ids, dedupe=dedupe)
        if use_cache and self._cache is not None:
            return self._fan_out(self._from_cache(batches, self._cache), stop, store=True)
        return self._fan_out(batches, stop)

    async def _from_cache(
        self, batches: AsyncGenerator[list[str], None], cache: Cache
    ) -> AsyncGenerator[list[str] | DetailBatch, None]:
        """Serve the ids ``cache`` holds as ready batches; repack the others 10 a request."""
        pending: list[str] = []
        seen = asked = 0
        try:
            async with aclosing(batches):
                async for batch in batches:
                    seen += len(batch)
                    hits = await self._cache_get(cache, DETAILS, "detail", batch)
                    if hits:
                        known = [v for v in hits.values() if v is not None]
                        unknown = tuple(i for i, v in hits.items() if v is None)
                        yield DetailBatch(tuple(hits), known, unknown, attempts=0)
                        pending.extend(i for i in batch if i not in hits)
                    else:
                        pending.extend(batch)
                    while len(pending) >= MAX_IDS_PER_REQUEST:
                        asked += MAX_IDS_PER_REQUEST
                        yield pending[:MAX_IDS_PER_REQUEST]
                        del pending[:MAX_IDS_PER_REQUEST]
                if pending:
                    asked += len(pending)
                    yield pending
        finally:
            self.stats.credits_saved += _requests(seen) - _requests(asked)

    async def _fan_out(
        self, batches: AsyncGenerator[_Batch, None], stop: asyncio.Event | None,
        store: bool = False,
    ) -> AsyncGenerator[DetailBatch, None]:
        """Run one request per batch of valid ids, at most the in-flight cap at a time
        (a batch already answered, from the cache, passes through)."""
        self._bind_loop()
        scope = _CallScope(stop)
        window: TaskWindow[DetailBatch] = TaskWindow()
        requests: dict[asyncio.Task[DetailBatch], tuple[list[str], _Request]] = {}
        async with aclosing(batches), window:
            exhausted = False
            while True:
                if scope.halted:
                    _halt({task: request for task, (_, request) in requests.items()})
                while not exhausted and not scope.halted and len(window) < self._inflight.limit:
                    try:
                        batch = await anext(batches)
                    except StopAsyncIteration:
                        exhausted = True
                        continue
                    request = _Request(scope)
                    if isinstance(batch, DetailBatch):
                        request.on_wire = True  # answered already: never given up
                        task = window.spawn(_ready(batch))
                        batch = list(batch.ids)
                    else:
                        task = window.spawn(self._detail_batch(batch, request, store))
                    requests[task] = (batch, request)
                if not len(window):
                    break
                task = await window.next_done()
                batch, request = requests.pop(task)
                if task.cancelled():  # halted while waiting for a slot, a permit or a retry
                    yield DetailBatch(tuple(batch), sent=False, attempts=request.attempts)
                else:
                    yield task.result()
        if scope.fatal is not None:
            raise scope.fatal

    async def _videos(
        self, batches: AsyncGenerator[list[str], None], store: bool = False
    ) -> AsyncGenerator[VideoDetail, None]:
        """The records of each batch as it completes; the first batch error is raised."""
        async with aclosing(self._fan_out(batches, None, store)) as results:
            async for result in results:
                if result.error is not None:
                    raise result.error
                if result.failed:
                    _warn_skipped("ids", list(result.failed), result.failed, result.request_id)
                for video in result.videos:
                    yield video

    def iter_video_details(self, ids: IdSource) -> AsyncGenerator[VideoDetail, None]:
        """Yield VideoDetails as their batches complete (ids pulled lazily, deduplicated).

        Ids the API does not know are skipped (logged at DEBUG), and so are ids whose record
        in a paid answer could not be decoded at all (logged at WARNING). Raises the first
        error a batch could not recover from; use :meth:`iter_detail_batches` to carry on
        past them and to see every id's outcome. Neither the coalescer nor the cache is
        used: an iterator is a crawl.
        """
        return self._videos(id_batches(ids))

    async def video_details(self, ids: Iterable[str | int]) -> list[VideoDetail]:
        """Fetch details for any number of ids: one VideoDetail per known id, in input order.

        Every id is validated before the first request; duplicates are sent once; ids are
        packed 10 a request. Fresh entries of the client's cache are served without a
        request (ids the API did not know included). With coalescing (the default),
        concurrent calls share requests: each gets exactly its own records, in its own
        order, and only the errors of its own ids. Ids whose record could not be decoded
        are skipped (logged at WARNING).
        """
        unique = unique_ids(ids)  # validated once, here: the batches below are made from it
        found = await self._lookup(unique)
        return [video for vid in unique if (video := found.get(vid)) is not None]

    async def video_detail(self, video_id: str | int) -> VideoDetail | None:
        """Fetch one video's details; None if the API does not know it (or its record could
        not be decoded, logged at WARNING). Cached and coalesced as :meth:`video_details`:
        concurrent calls share requests of up to 10 ids."""
        vid = _video_id(video_id)
        return (await self._lookup([vid])).get(vid)

    async def _lookup(self, unique: list[str]) -> dict[str, VideoDetail]:
        """The records of valid, unique ids: the cache first, then requests (shared through
        the coalescer, or the call's own)."""
        if self._closed:
            raise closed_error()
        self._bind_loop()
        todo = unique
        found: dict[str, VideoDetail] = {}
        if self._cache is not None and unique:
            hits = await self._cache_get(self._cache, DETAILS, "detail", unique)
            if hits:
                found = {vid: video for vid, video in hits.items() if video is not None}
                todo = [vid for vid in unique if vid not in hits]
        coalescer = self._coalescer
        if coalescer is None:
            self.stats.credits_saved += _requests(len(unique)) - _requests(len(todo))
            if todo:
                async with aclosing(self._videos(list_batches(todo), store=True)) as videos:
                    async for video in videos:
                        if video.video_id is not None:  # always: batches keep asked ids only
                            found.setdefault(video.video_id, video)
            return found
        # Each request sent for a lookup takes one back (see _coalesced_fetch).
        self.stats.credits_saved += _requests(len(unique))
        if todo:
            try:
                records = await coalescer.get(todo)
            finally:
                self.stats.coalesced = coalescer.joined
            for vid, record in zip(todo, records, strict=True):
                if record is not None:
                    found[vid] = record
        return found

    async def _coalesced_fetch(self, ids: list[str]) -> Fetched[VideoDetail]:
        """The coalescer's fetch: one shared request through the pipeline, its answer kept
        in the cache. A fatal error is raised (the coalescer fails every waiting lookup)
        and ends the shared scope, so that later lookups start afresh."""
        self.stats.credits_saved -= 1
        scope = self._app_scope
        request = _Request(scope)
        request.waiting = True  # until its first attempt reaches the wire
        coalescer = self._coalescer
        if coalescer is not None:
            request.on_send = coalescer.wake  # the next batch may queue for a permit
        task = asyncio.current_task()
        assert task is not None
        self._coalesced[task] = request
        try:
            batch = await self._detail_batch(ids, request, store=True)
        finally:
            del self._coalesced[task]
        if batch.sent and batch.error is None:
            if batch.failed:
                _warn_skipped("ids", list(batch.failed), batch.failed, batch.request_id)
            return Fetched({v.video_id: v for v in batch.videos if v.video_id is not None})
        error = batch.error or scope.fatal or closed_error()
        if error.fatal and self._app_scope is scope:
            self._app_scope = _CallScope()
        raise error

    async def _cache_get(
        self, cache: Cache, kind: CacheKind[T], name: str, keys: list[str]
    ) -> dict[str, T | None]:
        """Fresh entries of ``cache`` among ``keys``, counted and reported as hits."""
        hits = await cache.get_many(kind, keys)
        if hits:
            self.stats.cache_hits += len(hits)
            if self._emit is not None:
                self._emit(CacheHit(kind=name, hits=len(hits)))
        return hits

    # -- ranking ---------------------------------------------------------------------

    async def _ranking_page(
        self, query: RankingQuery, page_num: int, page_size: int, request: _Request,
        use_cache: bool = False,
    ) -> RankingPage:
        params = query.params(page_num, page_size)
        cache = self._cache if use_cache else None
        if cache is not None:
            key = query_key(RANKING_PATH, params)
            items = (await self._cache_get(cache, RANKING_PAGES, "ranking", [key])).get(key)
            if items is not None:
                self.stats.credits_saved += 1
                return RankingPage(page_num, items, attempts=0)
        decoded = await self._request(RANKING_PATH, params, self._decode_ranking, request)
        failed = {f.position: f.reason for f in decoded.failed}
        if cache is not None and not failed:  # a page with holes is not served again
            await cache.set_many(RANKING_PAGES, {key: decoded.records})
        return RankingPage(
            page_num, decoded.records, decoded.request_id, request.attempts, failed=failed
        )

    async def video_ranking(
        self,
        *,
        date: dt.date | str,
        region: str,
        video_rank_field: int,
        rank_type: int,
        page_num: int = 1,
        page_size: int = 10,
        product_category_id: str | int | None = None,
        created_by_ai: bool | None = None,
    ) -> list[RankedVideo]:
        """Fetch one page of a ranking list.

        ``date`` is a ``datetime.date`` or ``'YYYY-MM-DD'`` (a Monday for weekly lists, the
        1st for monthly ones); ``video_rank_field`` a :class:`VideoRankField`, ``rank_type``
        a :class:`RankType` (plain ints work). Everything is validated before sending.
        A fresh page in the client's cache (keyed by the whole query) costs no request.
        """
        query = ranking_query(
            date=date, region=region, video_rank_field=video_rank_field, rank_type=rank_type,
            product_category_id=product_category_id, created_by_ai=created_by_ai,
        )
        page_num, page_size = check_page(page_num, page_size)
        if self._closed:
            raise closed_error()
        self._bind_loop()
        page = await self._ranking_page(
            query, page_num, page_size, _Request(_CallScope()), use_cache=True
        )
        if page.failed:
            _warn_skipped("items", list(page.failed), page.failed, page.request_id)
        return page.items

    async def iter_ranking_pages(
        self,
        *,
        date: dt.date | str,
        region: str,
        video_rank_field: int,
        rank_type: int,
        page_size: int = 10,
        start_page: int = 1,
        max_pages: int | None = None,
        product_category_id: str | int | None = None,
        created_by_ai: bool | None = None,
        stop: asyncio.Event | None = None,
        use_cache: bool = False,
    ) -> AsyncGenerator[RankingPage, None]:
        """Yield the pages of a ranking list in order, fetched concurrently.

        The API gives no total: the list ends at the first page shorter than ``page_size``.
        The window of pages fetched ahead starts at one and grows by one with every full
        page, so it doubles every round trip, as TCP's slow start does (up to the in-flight
        cap): a short list costs few speculative requests, a long one soon runs at full
        speed. No page is fetched twice; ``max_pages`` is exact.
        Setting ``stop`` ends the list early: pages on the wire finish and are yielded in
        order, up to the first page that was given up. The cache is bypassed unless
        ``use_cache``: then fresh pages come from it (``attempts == 0``, no credit) and the
        others are stored in it.
        """
        query = ranking_query(
            date=date, region=region, video_rank_field=video_rank_field, rank_type=rank_type,
            product_category_id=product_category_id, created_by_ai=created_by_ai,
        )
        start_page, page_size = check_page(start_page, page_size)
        max_pages = check_max_pages(max_pages)
        self._bind_loop()
        last = MAX_PAGE_NUM if max_pages is None else min(MAX_PAGE_NUM, start_page + max_pages - 1)

        scope = _CallScope(stop)
        window: TaskWindow[RankingPage] = TaskWindow()
        requests: dict[asyncio.Task[RankingPage], tuple[int, _Request]] = {}
        ready: dict[int, RankingPage] = {}
        next_page = expected = start_page
        ahead = 1  # slow start: pages allowed in flight, one more per full page
        async with window:
            while expected <= last:
                if scope.halted:
                    # Stop: pages on the wire finish, the rest are given up; nothing new.
                    _halt({task: request for task, (_, request) in requests.items()})
                    last = min(last, next_page - 1)
                while next_page <= last and len(window) < min(ahead, self._inflight.limit):
                    request = _Request(scope)
                    task = window.spawn(
                        self._ranking_page(query, next_page, page_size, request, use_cache)
                    )
                    requests[task] = (next_page, request)
                    next_page += 1
                if expected in ready:
                    page = ready.pop(expected)
                    expected += 1
                    yield page
                    continue
                if not len(window):
                    break
                task = await window.next_done()
                page_num, _ = requests.pop(task)
                try:
                    page = task.result()  # a page's error is raised: the list cannot skip it
                except (asyncio.CancelledError, _Aborted):
                    last = min(last, page_num - 1)  # given up: the list stops before it
                    continue
                if len(page.items) + len(page.failed) < page_size:
                    # The end: pages after this one are empty. Cancel those not yet answered.
                    last = min(last, page_num)
                    for other, (num, _) in requests.items():
                        if num > last:
                            other.cancel()
                else:
                    ahead += 1
                if page_num <= last:
                    ready[page_num] = page

    async def iter_video_ranking(
        self,
        *,
        date: dt.date | str,
        region: str,
        video_rank_field: int,
        rank_type: int,
        page_size: int = 10,
        start_page: int = 1,
        max_pages: int | None = None,
        product_category_id: str | int | None = None,
        created_by_ai: bool | None = None,
    ) -> AsyncGenerator[RankedVideo, None]:
        """Yield a ranking list's items in rank order, across pages (see iter_ranking_pages)."""
        pages = self.iter_ranking_pages(
            date=date, region=region, video_rank_field=video_rank_field, rank_type=rank_type,
            page_size=page_size, start_page=start_page, max_pages=max_pages,
            product_category_id=product_category_id, created_by_ai=created_by_ai,
        )
        async with aclosing(pages):
            async for page in pages:
                if page.failed:
                    _warn_skipped("items", list(page.failed), page.failed, page.request_id)
                for item in page.items:
                    yield item


    # -- any other endpoint ----------------------------------------------------------

    async def request(
        self, path: str, params: Mapping[str, str | int | bool | None] | None = None, *,
        use_cache: bool = True,
    ) -> RawResponse:
        """GET any KeyAPI endpoint, untyped: the escape hatch for endpoints the SDK does not
        model yet (video trends, products, creators, shops...).

        The request takes the same path as the typed ones: the same rate limiter (so the
        key's QPS budget is shared, not blown), retries, typed errors, credit budget,
        events and cache (answers are kept while fresh, keyed by path and parameters;
        ``use_cache=False`` skips it). ``path`` is relative to the base URL, e.g.
        ``/v1/tiktok/video/trend/analytics``; ``params`` maps names to str, int or bool
        (None values are left out). Both are checked before anything is sent. Returns the
        envelope with ``data`` as decoded JSON; a non-zero code raises its typed error.
        """
        path = api_path(path)
        query = query_params(params)
        if any(
            self._key_forms.text(text) != text for text in (path, *query.keys(), *query.values())
        ):
            raise InvalidParameterError(
                "a parameter holds the API key: the client sends it in the Authorization "
                "header only; remove it from path and params"
            )
        if self._closed:
            raise closed_error()
        self._bind_loop()
        cache = self._cache if use_cache else None
        if cache is not None:
            key = query_key(path, query)
            hit = (await self._cache_get(cache, RAW_ANSWERS, "raw", [key])).get(key)
            if hit is not None:
                self.stats.credits_saved += 1
                return hit
        decoded = await self._request(path, query, _decode_raw, _Request(_CallScope()))
        answer = msgspec.structs.replace(decoded.records[0], request_id=decoded.request_id)
        if cache is not None:
            await cache.set_many(RAW_ANSWERS, {key: answer})
        return answer


def _warn_skipped(
    what: str, keys: list[Any], reasons: dict[Any, str], request_id: str | None
) -> None:
    """Say that records a paid answer could not decode are left out (they are not retried)."""
    logger.warning(
        "skipping %d %s whose record could not be decoded (request id %s): %s; first reason: %s",
        len(keys), what, request_id, keys, reasons[keys[0]],
    )


def _decode_typed(
    decoder: msgspec.json.Decoder[Envelope[T]], repairs: RepairLog, response: HttpResponse
) -> Decoded[T]:
    return decode_response(
        decoder, response.status, response.body, retry_after=response.retry_after,
        repairs=repairs,
    )


def _decode_raw(response: HttpResponse) -> Decoded[RawResponse]:
    return decode_raw(response.status, response.body, retry_after=response.retry_after)


def _requests(ids: int) -> int:
    """Detail requests ``ids`` distinct ids take on their own."""
    return -(-ids // MAX_IDS_PER_REQUEST)


async def _ready(batch: DetailBatch) -> DetailBatch:
    """A batch answered already (from the cache), as a task of the fan-out's window."""
    return batch
