"""KeyAPIClient: the async session manager, composing the request pipeline.

Every request takes the same path, each stage in the module named after it::

    validation -> batching -> fanout (window of tasks)
      -> retrying( concurrency slot -> limiting permit -> transport -> decoding )

The client is three pieces, each in its own module: the attempt pipeline (``attempts``:
permit, send, retry, decode, for every request), the detail fan-out and lookups
(``details``: batches of 10 through a window of requests, the cache and the coalescer) and
the ranking pagination (``ranking``: pages fetched ahead with slow start). This module
holds the configuration, the lifecycle (session, event loop) and :meth:`request`, the
untyped escape hatch. Under a credit budget each attempt reserves its credit just before
its permit (``budget``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from types import TracebackType
from typing import Any, Final, Literal

import msgspec

from .._logs import setup_logging
from ..app.budget import CreditBudget
from ..app.caching import RAW_ANSWERS, Cache, query_key
from ..app.coalescing import DEFAULT_WINDOW, Coalescer
from ..app.events import Event, EventHandler, make_emitter
from ..limiting.adaptive import Patience
from ..limiting.base import RateLimiter
from ..limiting.local import LocalRateLimiter
from ..pipeline.concurrency import InFlightLimit
from ..pipeline.decoding import DETAIL_DECODER, RANKING_DECODER, RawResponse, RepairLog
from ..pipeline.errors import ConfigurationError, InvalidParameterError
from ..pipeline.models import RankedVideo, VideoDetail
from ..pipeline.reachability import Reachability
from ..pipeline.redaction import Redactor
from ..pipeline.retrying import RetryPolicy
from ..pipeline.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Transport,
    check_api_key,
    check_base_url,
    closed_error,
    resolve_proxy,
)
from ..pipeline.validation import api_path, query_params
from .attempts import CallScope, ClientStats, Decode, Request, decode_typed, decode_untyped
from .details import DETAIL_PATH, DetailBatch, DetailCalls
from .ranking import RANKING_PATH, RankingCalls, RankingPage

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_QPS",
    "DEFAULT_RATE_LIMIT_PATIENCE",
    "DEFAULT_TIMEOUT",
    "DETAIL_PATH",
    "RANKING_PATH",
    "ClientStats",
    "DetailBatch",
    "KeyAPIClient",
    "RankingPage",
]

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


class KeyAPIClient(DetailCalls, RankingCalls):
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
            decode_typed, DETAIL_DECODER, self._repairs
        )
        self._decode_ranking: Decode[RankedVideo] = partial(
            decode_typed, RANKING_DECODER, self._repairs
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
        self._app_scope = CallScope()
        self._coalesced: dict[asyncio.Task[Any], Request] = {}
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
        decoded = await self._request(path, query, decode_untyped, Request(CallScope()))
        answer = msgspec.structs.replace(decoded.records[0], request_id=decoded.request_id)
        if cache is not None:
            await cache.set_many(RAW_ANSWERS, {key: answer})
        return answer

