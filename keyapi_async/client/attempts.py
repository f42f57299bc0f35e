"""The attempt pipeline: one request from its permit to its typed answer, with retries.

Every request of the client takes this path (``KeyAPIClient`` composes it with the detail
fan-out, ``details.py``, and the ranking pagination, ``ranking.py``)::

    retrying( concurrency slot -> credit -> limiting permit -> transport -> decoding )

A permit is taken just before the request goes on the wire, and every retry takes a new
one, so the rate limiter sees every start. A 429 without Retry-After is a congestion
signal, not a failure: the limiter slows down and the request waits for a fresh permit,
for up to ``rate_limit_patience`` seconds without any success. A fatal error (401, 402,
403, a redirect, a bare 404, an unreachable API, patience running out) ends the whole
call (its :class:`CallScope`): requests already on the wire finish (their answers are paid
for), no new one starts.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import msgspec
from backoff.types import Details

from ..app.budget import Credit, CreditBudget, charge_of
from ..app.caching import Cache, CacheKind
from ..app.events import (
    AttemptFinished,
    AttemptStarted,
    CacheHit,
    Event,
    PacingChanged,
    RateLimited,
    Retrying,
    url_without_credentials,
)
from ..limiting.adaptive import Patience
from ..limiting.base import RateLimiter
from ..pipeline.concurrency import InFlightLimit
from ..pipeline.decoding import (
    Decoded,
    Envelope,
    RawResponse,
    RepairLog,
    decode_raw,
    decode_response,
)
from ..pipeline.errors import InvalidParameterError, KeyAPIError, RateLimitError
from ..pipeline.fanout import TaskWindow
from ..pipeline.redaction import clean_text
from ..pipeline.retrying import RetryPolicy
from ..pipeline.transport import HttpResponse, Transport, closed_error

logger = logging.getLogger("keyapi_async")

#: A pacing rate change smaller than this fraction is not reported (the rate moves
#: continuously while it recovers from a 429).
_PACING_STEP: Final = 0.05

T = TypeVar("T")
#: Turns one HTTP answer into records or a typed error (one per endpoint, bound once).
Decode = Callable[[HttpResponse], Decoded[T]]


class Aborted(Exception):
    """The call was halted before this request went out (internal)."""


class CallScope:
    """State shared by the requests of one call: what halts it (a fatal error, a stop),
    and the grace a stop leaves to the requests already on the wire.

    A consumer of a window of requests (the fan-outs) lets the scope :meth:`watch` the
    window, so that a stop, and the end of its grace, wake it; it calls :meth:`halt` while
    the call is halted, and :meth:`close` when the call ends.
    """

    __slots__ = ("_timer", "expired", "fatal", "grace", "stop")

    def __init__(self, stop: asyncio.Event | None = None, grace: float | None = None) -> None:
        self.fatal: KeyAPIError | None = None
        self.stop = stop
        #: seconds requests on the wire get after the stop; None: as long as they take
        self.grace = grace
        #: the grace is over: requests still on the wire are cancelled
        self.expired = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def halted(self) -> bool:
        """No new request may start."""
        return self.fatal is not None or (self.stop is not None and self.stop.is_set())

    def watch(self, window: TaskWindow[Any]) -> None:
        """Wake ``window``'s consumer when the stop is set: a task of the window ends then
        (the consumer skips tasks that are not its requests)."""
        if self.stop is not None and not self.stop.is_set():
            window.spawn(self.stop.wait())

    def halt(self, requests: dict[asyncio.Task[T], Request], window: TaskWindow[Any]) -> None:
        """Give up the requests that are not on the wire (:func:`halt`). After a stop with
        a grace, start the grace (once); when it is over, cancel the requests still on the
        wire too: the server may have answered and charged them, the client counts them in
        ``stats.cancelled_on_wire``."""
        if self.expired:
            for task in requests:
                task.cancel()
            return
        halt(requests)
        if (
            self._timer is None and self.grace is not None
            and self.stop is not None and self.stop.is_set()
        ):
            self._timer = asyncio.get_running_loop().call_later(
                self.grace, self._expire, window
            )

    def _expire(self, window: TaskWindow[Any]) -> None:
        self.expired = True
        window.spawn(_wake())  # the consumer may be waiting for a request on the wire

    def close(self) -> None:
        """The call ended: the grace timer, if any, is not needed any more."""
        if self._timer is not None:
            self._timer.cancel()


async def _wake() -> None:
    """A task that ends at once: it wakes a window's consumer."""


def check_grace(grace: object) -> float | None:
    """A stop's grace: None, or seconds >= 0."""
    if grace is None:
        return None
    if (
        isinstance(grace, bool) or not isinstance(grace, (int, float))
        or not (math.isfinite(grace) and grace >= 0)
    ):
        raise InvalidParameterError(f"stop_grace must be seconds >= 0 or None, got {grace!r}")
    return float(grace)


class Request:
    """Bookkeeping of one logical request across its attempts."""

    __slots__ = (
        "answered", "attempts", "on_send", "on_wire", "rate_limited", "replay", "scope", "waiting",
    )

    def __init__(self, scope: CallScope) -> None:
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


def halt(requests: dict[asyncio.Task[T], Request]) -> None:
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


class AttemptPipeline:
    """The attempts of the client's requests: slot, credit, permit, send, decode, retry.

    ``KeyAPIClient`` sets the attributes below up (its ``__init__``) and binds the loop.
    """

    _limiter: RateLimiter
    _inflight: InFlightLimit
    _patience: Patience
    _transport: Transport
    _on_throttle: Callable[[float], Any] | None
    _retry: Callable[..., Any]
    _budget: CreditBudget | None
    _cache: Cache | None
    _emit: Callable[[Event], None] | None
    _attempt_ids: itertools.count[int]
    _paced: float | None
    _closed: bool
    retry_policy: RetryPolicy
    stats: ClientStats

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        return self._transport.base_url

    def _bind_loop(self) -> None:
        raise NotImplementedError  # the client's: ties it to the running loop

    async def _attempt(
        self, path: str, params: dict[str, str], decode: Decode[T], request: Request,
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
                    raise Aborted
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

    async def _congested(self, exc: RateLimitError, started: float, request: Request) -> None:
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
            raise Aborted
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
        self, path: str, params: dict[str, str], decode: Decode[T], request: Request,
    ) -> Decoded[T]:
        """An attempt inside the retry loop; its first call replays the failure of the
        attempt made outside it, so the loop counts that attempt and waits before the next."""
        if request.replay is not None:
            failure, request.replay = request.replay, None
            raise failure
        return await self._attempt(path, params, decode, request)

    async def _request(
        self, path: str, params: dict[str, str], decode: Decode[T], request: Request,
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



def warn_skipped(
    what: str, keys: list[Any], reasons: dict[Any, str], request_id: str | None
) -> None:
    """Say that records a paid answer could not decode are left out (they are not retried)."""
    logger.warning(
        "skipping %d %s whose record could not be decoded (request id %s): %s; first reason: %s",
        len(keys), what, request_id, keys, reasons[keys[0]],
    )


def decode_typed(
    decoder: msgspec.json.Decoder[Envelope[T]], repairs: RepairLog, response: HttpResponse
) -> Decoded[T]:
    return decode_response(
        decoder, response.status, response.body, retry_after=response.retry_after,
        repairs=repairs,
    )


def decode_untyped(response: HttpResponse) -> Decoded[RawResponse]:
    return decode_raw(response.status, response.body, retry_after=response.retry_after)


